"""Benchmarks of the real pushwake binary against local fakes; prints a Markdown table.

Run it through scripts/bench, which builds the release binary and provides moto. GitHub is
a small threaded HTTP server here that answers like GitHub (ETag, 304) and counts what it
is sent: requests, requests in flight, and quota used (GitHub does not count an authorised
304). EC2 is the moto server, behind a proxy here that counts each call by action.
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

BIN = os.environ["PUSHWAKE_BIN"]
MOTO = os.environ["PUSHWAKE_TEST_MOTO"]
# A little latency per request, as a real network has, so that concurrency shows.
LATENCY = float(os.environ.get("BENCH_LATENCY_MS", "5")) / 1000
TOKEN = "ghp_benchmarktoken000000000000000000000"


def sha(n):
    return f"{n:07x}" + "a" * 33


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.total = 0
            self.in_flight = 0
            self.peak = 0
            self.quota = 0
            self.actions = []
            self.times = {}

    def enter(self):
        with self.lock:
            self.total += 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)

    def leave(self):
        with self.lock:
            self.in_flight -= 1


class Handler(BaseHTTPRequestHandler):
    # Keep-alive, as GitHub and any real server; one write per response, no Nagle delay.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = -1

    def log_message(self, *args):
        pass


class GitHub(Handler):
    heads = {}  # "owner/repo" -> sha of main
    counter = Counter()

    def do_GET(self):
        c = self.counter
        c.enter()
        try:
            time.sleep(LATENCY)
            parts = self.path.split("/")
            # /repos/{owner}/{repo}/commits/heads/{branch}, or commits/{sha} for details
            repo = f"{parts[2]}/{parts[3]}"
            ref = parts[5]
            head = self.heads.get(repo)
            if ref == "heads" and "/".join(parts[6:]) == "main":
                etag = f'"{head}"'
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    self.wfile.flush()
                    if not self.headers.get("Authorization"):
                        with c.lock:
                            c.quota += 1
                    return
                with c.lock:
                    c.quota += 1
                    c.times.setdefault("head_seen", time.monotonic())
                body = head.encode()
                self.send_response(200)
                self.send_header("ETag", etag)
            else:
                with c.lock:
                    c.quota += 1
                body = json.dumps({
                    "sha": ref, "html_url": f"https://github.com/{repo}/commit/{ref}",
                    "commit": {"message": "Bench", "author": {"name": "b"}}, "author": {"login": "b"},
                }).encode()
                self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        finally:
            c.leave()


class Ec2Proxy(Handler):
    """moto behind a proxy: EC2 (and STS, CloudWatch) calls counted by action, S3 requests
    counted by the access key that signed them."""
    counter = Counter()
    refused_subnet = None  # a subnet with no room: its CreateFleet overrides are refused
    s3 = {}

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        action = next((kv[7:] for kv in body.decode().split("&") if kv.startswith("Action=")), None)
        # JSON protocols (the Price List) name their action in a header instead.
        action = action or self.headers.get("X-Amz-Target", "?").rsplit(".", 1)[-1]
        c = self.counter
        with c.lock:
            c.actions.append(action)
            c.times.setdefault(action, time.monotonic())
        refused = []
        if action == "CreateFleet" and self.refused_subnet:
            body, refused = without_subnet(body, self.refused_subnet)
        self.forward("POST", body, refused)

    def do_GET(self):
        self.count_s3()
        self.forward("GET", None)

    def do_PUT(self):
        self.count_s3()
        self.forward("PUT", self.rfile.read(int(self.headers.get("Content-Length", 0))))

    def count_s3(self):
        auth = self.headers.get("Authorization", "")
        key = auth.split("Credential=")[1].split("/")[0] if "Credential=" in auth else "?"
        with self.counter.lock:
            self.s3[key] = self.s3.get(key, 0) + 1

    def forward(self, method, body, refused=()):
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        req = urllib.request.Request(MOTO + self.path, data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req) as r:
                status, data, answer = r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            status, data, answer = e.code, e.read(), e.headers
        if refused:
            items = "".join(
                f"<item><launchTemplateAndOverrides><overrides><instanceType>{t}</instanceType>"
                f"<subnetId>{s}</subnetId></overrides></launchTemplateAndOverrides>"
                f"<lifecycle>on-demand</lifecycle><errorCode>InsufficientInstanceCapacity</errorCode>"
                f"<errorMessage>We currently do not have sufficient {t} capacity in the "
                f"Availability Zone you requested.</errorMessage></item>" for t, s in refused)
            data = data.replace(b"</CreateFleetResponse>",
                                f"<errorSet>{items}</errorSet></CreateFleetResponse>".encode())
        self.send_response(status)
        for name in ("Content-Type", "ETag", "Last-Modified"):
            if answer.get(name):
                self.send_header(name, answer.get(name))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


def without_subnet(body, subnet):
    """A CreateFleet body without the overrides in `subnet` (EC2 has no room there), and
    the (type, subnet) of each removed, for the errorSet EC2 would answer."""
    pairs = urllib.parse.parse_qsl(body.decode(), keep_blank_values=True)
    prefix = "LaunchTemplateConfigs.1.Overrides."
    overrides = {}
    for k, v in pairs:
        if k.startswith(prefix):
            n, field = k[len(prefix):].split(".", 1)
            overrides.setdefault(int(n), {})[field] = v
    keep = [o for _, o in sorted(overrides.items()) if o.get("SubnetId") != subnet]
    refused = [(o.get("InstanceType", ""), o["SubnetId"]) for o in overrides.values()
               if o.get("SubnetId") == subnet]
    out = [(k, v) for k, v in pairs if not k.startswith(prefix)]
    for n, o in enumerate(keep, 1):
        out.extend((f"{prefix}{n}.{f}", v) for f, v in o.items())
    return urllib.parse.urlencode(out).encode(), refused


def serve(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


GITHUB = serve(GitHub)
EC2 = serve(Ec2Proxy)
ec2 = boto3.client("ec2", endpoint_url=MOTO, region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")


def config(dir, watches, interval="60s", top=""):
    text = f'{top}interval = "{interval}"\nstate_dir = "{dir}/state"\n' \
           f'[github]\napi_url = "{GITHUB}"\ntoken_env = "GITHUB_TOKEN"\n' \
           f'[aws]\nregion = "us-east-1"\nendpoint_url = "{EC2}"\n'
    for repo, ids in watches:
        quoted = ", ".join(f'"{i}"' for i in ids)
        text += f'\n[[watch]]\nrepo = "{repo}"\nbranch = "main"\ninstances = [{quoted}]\n'
    path = os.path.join(dir, "config.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


ENV = {
    "PATH": os.environ["PATH"], "HOME": tempfile.mkdtemp(), "GITHUB_TOKEN": TOKEN,
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def once(path):
    """Runs one pass; returns (wall seconds, peak RSS in MB)."""
    err = tempfile.TemporaryFile()
    start = time.monotonic()
    proc = subprocess.Popen([BIN, "--once", "--config", path], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=err)
    peak = 0
    while True:
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            peak = max(peak, int(rss(proc.pid)["VmHWM"]))
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(0.0005)
    wall = time.monotonic() - start
    if os.waitstatus_to_exitcode(status) != 0:
        err.seek(0)
        sys.exit(f"pushwake --once failed: {err.read().decode()}")
    return wall, peak / 1024


rows = []


def unchanged(n):
    dir = tempfile.mkdtemp()
    for i in range(n):
        GitHub.heads[f"bench/r{i}"] = sha(1)
    path = config(dir, [(f"bench/r{i}", ["i-0123456789abcdef0"]) for i in range(n)])
    once(path)  # the baseline
    GitHub.counter.reset()
    wall, rss = once(path)
    c = GitHub.counter
    rows.append((f"unchanged pass, {n} watch(es)",
                 f"{wall * 1000:.0f} ms wall, {c.total} requests ({c.total - c.quota} answered 304), "
                 f"peak {c.peak} in flight, {c.quota} quota used, {rss:.1f} MB peak RSS"))


def trigger(m):
    ids = [i["InstanceId"] for i in ec2.run_instances(ImageId="ami-12345678", MinCount=m, MaxCount=m,
                                                     InstanceType="t3.micro")["Instances"]]
    ec2.stop_instances(InstanceIds=ids)
    dir = tempfile.mkdtemp()
    repo = f"bench/t{m}"
    GitHub.heads[repo] = sha(1)
    path = config(dir, [(repo, ids)])
    once(path)
    GitHub.heads[repo] = sha(2)
    GitHub.counter.reset()
    Ec2Proxy.counter.reset()
    wall, _ = once(path)
    c = Ec2Proxy.counter
    lag = (c.times["StartInstances"] - GitHub.counter.times["head_seen"]) * 1000
    rows.append((f"trigger, {m} instance(s)",
                 f"{len(c.actions)} EC2 calls ({', '.join(c.actions)}), "
                 f"{lag:.0f} ms from the new head seen to StartInstances sent, {wall * 1000:.0f} ms wall"))
    # The next pass confirms the starts and closes the run; the one after has no open run.
    for what in ("the pass after it (confirms the starts)", "the pass after that (no open run)"):
        Ec2Proxy.counter.reset()
        wall, _ = once(path)
        c = Ec2Proxy.counter
        calls = f" ({', '.join(c.actions)})" if c.actions else ""
        rows.append((f"{what}, {m} instance(s)",
                     f"{len(c.actions)} EC2 calls{calls}, {wall * 1000:.0f} ms wall"))


def launching(m):
    """A watch of no pool and `m` repeats from a template over two zones, the first
    without capacity: EC2 calls and time from the new head to every machine running."""
    name = f"bench-{m}-{time.time_ns()}"
    template = ec2.create_launch_template(
        LaunchTemplateName=name,
        LaunchTemplateData={"ImageId": "ami-12345678", "InstanceType": "t3.micro"},
    )["LaunchTemplate"]["LaunchTemplateId"]
    subnets = {s["AvailabilityZone"]: s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]
               if s.get("DefaultForAz")}
    a, b = subnets["us-east-1a"], subnets["us-east-1b"]
    dir = tempfile.mkdtemp()
    repo = f"bench/l{m}"
    GitHub.heads[repo] = sha(1)
    path = config(dir, [(repo, [])])
    with open(path, "a") as f:
        f.write(f'repeats = {m}\nlaunch = {{ template = "{template}", subnets = ["{a}", "{b}"], '
                f'instance_types = ["t3.micro"] }}\n')
    once(path)
    GitHub.heads[repo] = sha(2)
    GitHub.counter.reset()
    Ec2Proxy.counter.reset()
    Ec2Proxy.refused_subnet = a
    try:
        wall, _ = once(path)
    finally:
        Ec2Proxy.refused_subnet = None
    c = Ec2Proxy.counter
    lag = (c.times["CreateFleet"] - GitHub.counter.times["head_seen"]) * 1000
    running = ec2.describe_instances(Filters=[
        {"Name": "tag:pushwake:repo", "Values": [repo]},
        {"Name": "instance-state-name", "Values": ["running"]},
        {"Name": "subnet-id", "Values": [b]},
    ])
    up = sum(len(r["Instances"]) for r in running["Reservations"])
    counts = {}
    for action in c.actions:
        counts[action] = counts.get(action, 0) + 1
    calls = ", ".join(f"{a} ×{n}" if n > 1 else a for a, n in counts.items())
    rows.append((f"launch from a template, {m} repeat(s), first zone refused",
                 f"{len(c.actions)} EC2 calls ({calls}), {lag:.0f} ms from the new head seen to "
                 f"CreateFleet sent, {up} of {m} running in the second zone after one pass, "
                 f"{wall * 1000:.0f} ms wall"))


def once_wall():
    dir = tempfile.mkdtemp()
    GitHub.heads["bench/once"] = sha(1)
    path = config(dir, [("bench/once", ["i-0123456789abcdef0"])])
    once(path)
    walls = sorted(once(path)[0] * 1000 for _ in range(20))
    rows.append(("--once, no change (20 runs)",
                 f"median {statistics.median(walls):.1f} ms, min {walls[0]:.1f} ms, max {walls[-1]:.1f} ms "
                 f"(includes {LATENCY * 1000:.0f} ms simulated network latency)"))


def hung_github():
    """A GitHub that accepts connections and never answers: how long `--once` takes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held = []

    def accept():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)  # kept open, never answered

    threading.Thread(target=accept, daemon=True).start()
    dir = tempfile.mkdtemp()
    path = config(dir, [("bench/hung", ["i-0123456789abcdef0"])])
    text = open(path).read().replace(GITHUB, f"http://127.0.0.1:{listener.getsockname()[1]}")
    open(path, "w").write(text)
    start = time.monotonic()
    out = subprocess.run([BIN, "--config", path, "--once"], env=ENV, capture_output=True, text=True)
    wall = time.monotonic() - start
    listener.close()
    last = (out.stderr.strip().splitlines() or [""])[-1].strip()
    rows.append(("GitHub accepts and never answers, `--once`",
                 f"exit {out.returncode} after {wall:.1f} s: {last}"))


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return {l.split(":")[0]: l.split()[1] for l in f if l.startswith(("VmRSS", "VmHWM"))}


def idle(seconds):
    dir = tempfile.mkdtemp()
    GitHub.heads["bench/idle"] = sha(1)
    path = config(dir, [("bench/idle", ["i-0123456789abcdef0"])], interval="10s")
    proc = subprocess.Popen([BIN, "--config", path], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    t0 = cpu_ticks(proc.pid)
    time.sleep(seconds)
    ticks = cpu_ticks(proc.pid) - t0
    mem = rss(proc.pid)
    proc.terminate()
    proc.wait()
    hz = os.sysconf("SC_CLK_TCK")
    rows.append((f"daemon idle, {seconds} s (a pass every 10 s)",
                 f"RSS {int(mem['VmRSS']) / 1024:.1f} MB (peak {int(mem['VmHWM']) / 1024:.1f} MB), "
                 f"CPU {ticks / hz * 1000:.0f} ms in {seconds} s"))


def shared():
    """Two daemons on one shared state, a pass a second: S3 requests per unchanged pass per
    agent, then how long the standby takes to take over a SIGKILLed leader."""
    s3 = boto3.client("s3", endpoint_url=MOTO, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    bucket = f"bench-shared-{os.getpid()}"
    s3.create_bucket(Bucket=bucket)
    GitHub.heads["bench/shared"] = sha(1)
    procs, dirs = [], []
    for n in range(2):
        dir = tempfile.mkdtemp()
        path = config(dir, [("bench/shared", ["i-0123456789abcdef0"])], interval="1s",
                      top=f'state_url = "s3://{bucket}/team"\n')
        env = dict(ENV, AWS_ACCESS_KEY_ID=f"agent{n}")
        procs.append(subprocess.Popen([BIN, "--config", path], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        dirs.append(dir)

    def holder():
        try:
            lease = json.loads(s3.get_object(Bucket=bucket, Key="team/lease.json")["Body"].read())
        except s3.exceptions.NoSuchKey:
            return None
        return next((n for n, d in enumerate(dirs) if f"{d}/state#" in lease["holder"]), None)

    deadline = time.monotonic() + 30
    while holder() is None or time.monotonic() < deadline - 25:
        time.sleep(0.1)
    leader = holder()
    before = dict(Ec2Proxy.s3)
    seconds = 20
    time.sleep(seconds)
    for n in range(2):
        made = Ec2Proxy.s3.get(f"agent{n}", 0) - before.get(f"agent{n}", 0)
        role = "leader" if n == leader else "standby"
        rows.append((f"shared state, unchanged, {role} (a pass a second, {seconds} s)",
                     f"{made} S3 requests, {made / seconds:.2f} per pass"))
    procs[leader].kill()
    killed = time.monotonic()
    while holder() == leader:
        time.sleep(0.05)
    took = time.monotonic() - killed
    rows.append(("shared state, takeover after SIGKILL of the leader (interval 1 s, lease_ttl 3 s)",
                 f"{took:.1f} s"))
    for p in procs:
        p.kill()
        p.wait()


ONLY = os.environ.get("BENCH_ONLY")
if ONLY == "launch":
    for m in (1, 20, 200):
        launching(m)
    print("| scenario | measured |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    sys.exit(0)
if ONLY == "shared":
    shared()
    print("| scenario | measured |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    sys.exit(0)
for n in (1, 100, 1000):
    unchanged(n)
if ONLY == "unchanged":
    print("| scenario | measured |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    sys.exit(0)
for m in (1, 20, 200):
    trigger(m)
for m in (1, 20, 200):
    launching(m)
once_wall()
hung_github()
shared()
idle(int(os.environ.get("BENCH_IDLE_SECONDS", "60")))

print("| scenario | measured |")
print("|---|---|")
for name, value in rows:
    print(f"| {name} | {value} |")
