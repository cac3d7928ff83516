"""What a run reports: report.json, and the self-contained report.html and sweep.html with their plots."""
