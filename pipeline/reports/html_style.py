"""The inline stylesheet of ``report.html``: system fonts only, nothing loaded from anywhere."""

CSS = """
:root{--ink:#0f172a;--text:#1e293b;--muted:#64748b;--line:#e2e8f0;--bg:#f8fafc;--card:#fff;--blue:#2563eb;
--ok:#15803d;--warn:#b45309;--bad:#b91c1c}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,"Liberation Sans","DejaVu Sans",sans-serif}
.wrap{max-width:1120px;margin:0 auto;padding:0 28px}
header{background:linear-gradient(135deg,#0f172a,#1e3a8a);color:#e2e8f0;padding:22px 0 0}
header .brand{font-size:12px;letter-spacing:.14em;text-transform:uppercase;color:#93c5fd;font-weight:600}
header h1{margin:2px 0 4px;font-size:26px;color:#fff;font-weight:650}
header .sub{margin:0 0 14px;color:#cbd5e1;font-size:13px}
header code{background:rgba(255,255,255,.1);color:#e2e8f0}
nav{display:flex;flex-wrap:wrap;gap:4px;padding-bottom:10px}
nav a{color:#e2e8f0;text-decoration:none;font-size:13px;padding:4px 10px;border-radius:6px;background:rgba(255,255,255,.08)}
nav a:hover{background:rgba(255,255,255,.2)}
main.wrap{padding-top:22px;padding-bottom:10px}
.pair{display:grid;grid-template-columns:minmax(300px,1fr) minmax(360px,1.25fr);gap:18px;align-items:center}
.pair figure.plot{margin:0}
section{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:18px 22px 20px;margin:0 0 20px;
box-shadow:0 1px 2px rgba(15,23,42,.04)}
h2{margin:0 0 12px;font-size:19px;color:var(--ink);display:flex;align-items:center;gap:10px;flex-wrap:wrap}
h3{margin:20px 0 8px;font-size:14px;color:var(--ink);text-transform:uppercase;letter-spacing:.05em}
.step{display:inline-flex;align-items:center;justify-content:center;width:26px;height:26px;border-radius:50%;
background:var(--blue);color:#fff;font-size:13px}
.kind{font-size:12px;color:var(--muted);font-weight:400}
.badge{display:inline-block;font-size:11px;font-weight:600;padding:2px 8px;border-radius:999px;background:#e0e7ff;
color:#3730a3;text-transform:uppercase;letter-spacing:.04em}
.badge.ok{background:#dcfce7;color:var(--ok)}
.badge.warn{background:#fef3c7;color:var(--warn);text-transform:none;letter-spacing:0}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:10px;margin:4px 0 8px}
.card{border:1px solid var(--line);border-radius:10px;padding:10px 14px;background:#fbfdff}
.card .label{font-size:11px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted)}
.card .value{font-size:22px;font-weight:650;color:var(--ink);margin-top:2px}
.card .note{font-size:12px;color:var(--muted);min-height:1em}
.facts{display:flex;flex-wrap:wrap;gap:18px;font-size:13px;color:var(--muted);margin:-4px 0 10px}
.facts b{color:var(--text);font-weight:600;margin-right:4px}
ul.guarantees{margin:0;padding:0;list-style:none}
ul.guarantees li{padding:7px 10px 7px 32px;border-left:3px solid var(--ok);background:#f0fdf4;margin:0 0 6px;border-radius:0 8px 8px 0;
position:relative}
ul.guarantees li:before{content:"\\2713";position:absolute;left:11px;color:var(--ok);font-weight:700}
ul.guarantees li.none{border-color:var(--warn);background:#fffbeb}
ul.guarantees li.none:before{content:"!";color:var(--warn)}
table{border-collapse:collapse;width:100%;font-size:13px;margin:4px 0 8px}
table.kv th{width:220px;text-align:left;font-weight:600;color:var(--muted);vertical-align:top}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
table.grid thead th{background:#f1f5f9;color:var(--ink);font-weight:600;font-size:12px;border-bottom:1px solid #cbd5e1}
table.grid tbody tr:nth-child(even){background:#f8fafc}
table.numeric td{font-variant-numeric:tabular-nums;white-space:nowrap}
.scroll{overflow-x:auto;max-height:480px;overflow-y:auto;border:1px solid var(--line);border-radius:8px}
.scroll table{margin:0}
code{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;background:#f1f5f9;
padding:1px 5px;border-radius:4px;color:#0f172a;word-break:break-all}
code.json{display:block;white-space:pre-wrap}
.muted{color:var(--muted)}
figure.plot{margin:14px 0 4px;padding:10px 10px 6px;border:1px solid var(--line);border-radius:10px;background:#fff}
figure.plot svg{display:block;width:100%;height:auto}
figcaption{font-size:12px;color:var(--muted);margin-top:4px}
.plots2{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:12px}
.notice{background:#eff6ff;border:1px solid #bfdbfe;color:#1e3a8a;border-radius:10px;padding:10px 14px;margin:0 0 18px}
.warn{background:#fffbeb;border:1px solid #fde68a;border-radius:10px;padding:8px 14px;margin:10px 0}
.warn ul{margin:4px 0;padding-left:18px}
details{margin:12px 0 0;border:1px solid var(--line);border-radius:8px;padding:6px 12px}
details summary{cursor:pointer;color:var(--muted);font-size:13px}
details.local{border-color:#fecaca;background:#fef2f2}
details.local summary{color:var(--bad)}
footer{color:var(--muted);font-size:12px;padding:6px 28px 30px}
@media print{body{background:#fff}header{background:#0f172a}section{break-inside:avoid;box-shadow:none}}
"""
