import asyncio, sys, subprocess, os, tempfile, time
from pathlib import Path
sys.path.insert(0, "/work/wt-kills/tests")
from tests.sim_fixtures import site_toml, free_port
mode = sys.argv[1]
d = Path(tempfile.mkdtemp(dir="/tmp/kills"))
port = free_port()
db = d / "data" / "s.sqlite"; db.parent.mkdir()
site = d / "site.toml"; site.write_text(site_toml(1, 1, port=port, database=str(db)))
def serve(timeout):
    p = subprocess.Popen([sys.executable, "-m", "smartcharge", "serve", "--config", str(site)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": "/work/wt-kills"})
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.terminate(); out, _ = p.communicate(timeout=20)
        print("STILL RUNNING after", timeout)
    print("rc", p.returncode); print(out.decode()[-2500:])
if mode != "fresh":
    serve(8)   # create the file
try:
    if mode == "file":
        subprocess.run(["chattr", "+i", str(db)], check=True)
    elif mode in ("dir", "fresh"):
        subprocess.run(["chattr", "+i", str(db.parent)], check=True)
    serve(15)
finally:
    subprocess.run(["chattr", "-R", "-i", str(d)])
