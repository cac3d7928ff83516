"""How a run goes: the plan, the runner, the streaming and Dask engines, progress."""
