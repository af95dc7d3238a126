#!/usr/bin/env python3
"""Checks the figures of README.md and BENCHMARKS.md against the results files they name.

Each figure of README.md's "Measured" table and of BENCHMARKS.md's tables (today's figures, the
simulator, three real clients, as heard, player CPU, server, heal, before/after) is recomputed
from its file in bench/results/ (a JSON key, a column of as-heard-runs.tsv, a line of a text
file) and compared at the precision the doc prints. Each row must also name its file and commit.
One line per mismatch: doc, row, what the doc says, what the file says. Exit status 1 if any.

The mapping from figures to files is the explicit list in `checks()` below; a figure not listed
there is not checked. Where a results file does not record its commit, COMMITS says where the
commit comes from. `--self-test` changes one figure in a copy of each doc and expects a failure.

Python 3.11, standard library only.
"""

import csv
import json
import re
import statistics
import sys
from decimal import Decimal, ROUND_HALF_UP
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

# Commits of results files that do not record their own (bench/run records it since this check
# was added: a "commit" key in each JSON, a "commit ..." first line in player.txt). Taken from the
# machine.txt committed with each file: 7f19baf's says aa4bf3c (simulator, server and player
# results), f74df32's says 13422f7 (sync-grpc.json, sync-quic.json); heal's is in its file name.
COMMITS = {
    "sim-*.json": "aa4bf3c",
    "server-50.json": "aa4bf3c",
    "player.txt": "aa4bf3c",
    "sync-*.json": "13422f7",
}

PROBLEMS = []


def problem(doc, row, what, doc_value, file_value):
    PROBLEMS.append(f"{doc}: row '{row}': {what}: doc says {doc_value}, file says {file_value}")


# --- reading the files -------------------------------------------------------------------------


def load_json(name):
    return json.loads((RESULTS / name).read_text())


def commit_of(name):
    """The commit that produced a results file: recorded in it, else COMMITS."""
    path = RESULTS / name
    if name.endswith(".json"):
        recorded = json.loads(path.read_text()).get("commit")
        if recorded:
            return recorded
    elif name == "player.txt":
        first = path.read_text().splitlines()[0]
        if first.startswith("commit "):
            return first.split()[1]
    for pattern, commit in COMMITS.items():
        if Path(name).match(pattern):
            return commit
    m = re.search(r"-([0-9a-f]{7,})\.", name)
    return m.group(1) if m else None


def runs_tsv():
    with open(RESULTS / "as-heard-runs.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def as_heard_runs(commits, kind):
    """p99s etc. of the runs of as-heard-runs.tsv at these commits: kind is idle, load or stall."""
    out = []
    for r in runs_tsv():
        if r["commit"] not in commits or r["timing"] != "timeline":
            continue
        words = r["run"].split()
        if words[0] not in ("grpc-skew", "quic-skew"):
            continue
        extra = words[1:]
        if kind == "idle" and extra:
            continue
        if kind == "load" and extra != ["load=2"]:
            continue
        if kind == "stall" and not (extra and extra[0].startswith("stall=")):
            continue
        out.append(r)
    if not out:
        PROBLEMS.append(f"as-heard-runs.tsv: no {kind} skewed runs of {', '.join(commits) or 'no commit named'}")
    return out


def player_text():
    return (RESULTS / "player.txt").read_text()


def criterion_ms(part):
    """The middle estimate of a criterion benchmark's time in player.txt, in ms."""
    m = re.search(re.escape(part) + r"\n\s+time:\s+\[\S+ \S+ (\S+) (\S+)", player_text())
    value, unit = float(m.group(1)), m.group(2)
    return value * {"ms": 1, "µs": 1e-3, "us": 1e-3, "s": 1e3}[unit]


def heal():
    out = {}
    for line in (RESULTS / "heal-e9084de.txt").read_text().splitlines():
        m = re.match(r"(grpc|quic): (\d+) runs, median ([\d.]+) s, worst ([\d.]+) s, all: (.*)", line)
        if m:
            out[m.group(1)] = [float(x) for x in m.group(5).split()]
    return out


def stream(name):
    """Rows of a bench/stream results file by length in minutes, and the commit its header names."""
    lines = (RESULTS / name).read_text().splitlines()
    commit = re.search(r"commit ([0-9a-f]{7})", lines[0]).group(1)
    header = lines[1].split("\t")
    table = {}
    for line in lines[2:]:
        cells = line.split("\t")
        if len(cells) == len(header):
            table[cells[0]] = dict(zip(header, cells))
    return table, commit


# --- reading the docs --------------------------------------------------------------------------


def doc_lines(doc, text=None):
    return (text if text is not None else (ROOT / doc).read_text()).splitlines()


def rows(lines):
    """Every table row as a list of stripped cells."""
    for line in lines:
        if line.startswith("|") and not re.match(r"\|[-| ]+\|$", line):
            yield [c.strip() for c in line.strip().strip("|").split("|")]


def find_row(doc, lines, *keys, width=None):
    """The table row whose first cells are `keys` (and which has `width` cells, if given)."""
    for cells in rows(lines):
        if cells[: len(keys)] == list(keys) and width in (None, len(cells)):
            return cells
    PROBLEMS.append(f"{doc}: no table row starting {' | '.join(keys)}" + (f" with {width} cells" if width else ""))
    return None


def same(doc_str, value):
    """The file's value printed at the doc's precision equals the doc's string."""
    doc_str = doc_str.replace(" ", "").replace(",", "")
    places = len(doc_str.split(".")[1]) if "." in doc_str else 0
    quantum = Decimal(1).scaleb(-places)
    return Decimal(repr(float(value))).quantize(quantum, ROUND_HALF_UP) == Decimal(doc_str)


def expect(doc, row, text, pattern, values, what=None):
    """`pattern`'s groups in `text` must equal `values` (None skips a group)."""
    if text is None:
        return
    m = re.search(pattern, text)
    if not m:
        shown = text if len(text) < 200 else "the section's text"
        PROBLEMS.append(f"{doc}: row '{row}': expected text like /{pattern}/ in: {shown}")
        return
    for i, value in enumerate(values):
        if value is None:
            continue
        got = m.group(i + 1)
        if not same(got, value):
            label = f"{what} (figure {i + 1})" if what else f"figure {i + 1} of /{pattern}/"
            problem(doc, row, label, got, value)


def expect_source(doc, row, cell, files, commits=None):
    """The source cell names each file and its commit."""
    if cell is None:
        return
    for name in files:
        if name not in cell:
            problem(doc, row, "source file", cell, name)
        commit = commit_of(name) if commits is None else None
        if commit and commit.rstrip("+") not in cell:
            problem(doc, row, f"commit of {name}", cell, commit)
    for commit in commits or []:
        if commit not in cell:
            problem(doc, row, "commit", cell, commit)


def commits_in(cell):
    return re.findall(r"\b[0-9a-f]{7}\b", cell or "")


def p99s(runs):
    return [float(r["p99_us"]) for r in runs]


# --- the figures -------------------------------------------------------------------------------


def check_benchmarks(text=None):
    doc = "BENCHMARKS.md"
    lines = doc_lines(doc, text)
    header = next(rows(lines))
    src = header.index("source: file, commit")

    def row(*keys, width=None):
        return find_row(doc, lines, *keys, width=width)

    # Today's figures. The as-heard rows are recomputed from the runs of the commits they name.
    r = row("as heard, one client skewed +1.5 s, +150 ppm")
    if r:
        runs = as_heard_runs(commits_in(r[src]), "idle") + as_heard_runs(commits_in(r[src]), "load")
        v = p99s(runs)
        expect(doc, r[0], r[1], r"under 100 µs in (\d+) of (\d+) runs, median ([\d.]+) µs",
               [sum(x < 100 for x in v), len(v), statistics.median(v)])
        expect_source(doc, r[0], r[src], ["as-heard-runs.tsv"], [])
        over = sorted(x for x in p99s(as_heard_runs(commits_in(r[src]), "idle")) if x > 50)
        expect(doc, "What limits it now", "\n".join(lines),
               r"The two\s+idle runs over 50 µs \(([\d.]+) and ([\d.]+) µs\)", over + [None] * (2 - len(over)))
        if len(over) != 2:
            problem(doc, "What limits it now", "idle runs over 50 µs", "two", len(over))
        clock = [float(x["clock_p99_us"]) for x in runs]
        expect(doc, "What limits it now", "\n".join(lines),
               r"\*\*Clock sync\*\* is a smaller share: (\d+)–(\d+) µs p99 of the lag in the (\w+) runs",
               [min(clock), max(clock)])
    for key, kind, pattern in [
        ("… idle machine", "idle", r"p99 ([\d.]+)–([\d.]+) µs \((\d+) runs; (\d+) under 50 µs\)"),
        ("… two busy loops", "load", r"p99 ([\d.]+)–([\d.]+) µs \((\d+) runs\)"),
    ]:
        r = row(key)
        if r:
            v = p99s(as_heard_runs(commits_in(r[src]), kind))
            expect(doc, key, r[1], pattern, [min(v), max(v), len(v), sum(x < 50 for x in v)][: re.compile(pattern).groups])
            expect_source(doc, key, r[src], ["as-heard-runs.tsv"], [])
    r = row("as heard, skewed client stopped 30 ms and 150 ms")
    if r:
        runs = as_heard_runs(commits_in(r[src]), "stall")
        by = {x["run"].split()[0]: float(x["p99_us"]) for x in runs}
        expect(doc, r[0], r[1], r"p99 gRPC ([\d.]+) µs, QUIC ([\d.]+) µs", [by.get("grpc-skew"), by.get("quic-skew")])
        expect_source(doc, r[0], r[src], ["as-heard-runs.tsv"], [])
    r = row("as heard, the rig's own floor")
    if r:
        expect(doc, r[0], r[1], r"([\d.]+) µs", [load_json("as-heard-calibrate.json")["p99_us"]])
        expect_source(doc, r[0], r[src], ["as-heard-calibrate.json"], [tsv_commit("calibrate", load_json("as-heard-calibrate.json"))])
    r = row("three real clients, loopback, clocks ±2 s ±200 ppm")
    if r:
        g, q = load_json("sync-grpc.json"), load_json("sync-quic.json")
        expect(doc, r[0], r[1], r"p99 gRPC ([\d.]+) µs, QUIC ([\d.]+) µs; .*lead (\d+) ms",
               [g["p99_us"], q["p99_us"], max(g["lead_ms"] + q["lead_ms"])])
        expect_source(doc, r[0], r[src], ["sync-grpc.json", "sync-quic.json"])
    for key, name in [("simulator, LAN, 8 peers, 10 min", "lan"), ("simulator, Wi-Fi, 8 peers, 10 min", "wifi")]:
        r = row(key)
        if r:
            j = load_json(f"sim-{name}.json")
            pattern = r"p99 ([\d.]+) µs, max ([\d.]+) µs" if "max" in r[1] else r"p99 ([\d.]+) µs"
            expect(doc, key, r[1], pattern, [j["sync_error_us"]["p99"], j["sync_error_us"]["max"]][: re.compile(pattern).groups])
            expect_source(doc, key, r[src], [f"sim-{name}.json"])
    r = row("simulator, lossy WAN, 8 peers, 10 min")
    if r:
        j = load_json("sim-wan-lossy.json")
        expect(doc, r[0], r[1], r"p99 ([\d.]+) µs; (\d+) of (\d+) commands",
               [j["sync_error_us"]["p99"], j["commands_converged"], j["commands_issued"]])
        expect_source(doc, r[0], r[src], ["sim-wan-lossy.json"])
    r = row("simulator, 1000 peers, 60 s")
    if r:
        j = load_json("sim-scale-1000.json")
        expect(doc, r[0], r[1], r"([\d.]+) s wall; ([\d.]+) messages", [j["wall_seconds"], j["messages_per_peer_per_sec"]])
        expect_source(doc, r[0], r[src], ["sim-scale-1000.json"])
    r = row("player CPU, 48 kHz stereo")
    if r:
        expect(doc, r[0], r[1], r"([\d.]+) % of one core", [player_percent()])
        expect_source(doc, r[0], r[src], ["player.txt"])
    r = row("server, one 31.8 MB song to 50 clients")
    if r:
        j = load_json("server-50.json")
        expect(doc, r[0], r[1], r"in ([\d.]+) s \((\d+) MB/s\)", [j["last_byte_s"], j["throughput_mb_s"]])
        expect(doc, r[0], r[0], r"one ([\d.]+) MB song to (\d+) clients", [j["song_bytes"] / 1e6, j["clients"]])
        expect_source(doc, r[0], r[src], ["server-50.json"])
    r = row("streamed start, a 20-minute / 2-hour FLAC never played before")
    if r:
        name = "stream-4746e1a.txt"
        table, commit = stream(name)
        a, b = table["20"], table["120"]
        expect(doc, r[0], r[1],
               r"first sound ([\d.]+) / ([\d.]+) ms after `play`; ([\d.]+) / ([\d.]+) MB resident \(peak ([\d.]+) / ([\d.]+) MB\)",
               [float(a["first_sound_ms"]), float(b["first_sound_ms"]), float(a["steady_rss_mb"]),
                float(b["steady_rss_mb"]), float(a["peak_rss_mb"]), float(b["peak_rss_mb"])])
        expect_source(doc, r[0], r[src], [name], [commit])
    r = row("heal after a 4 s partition, real processes in namespaces")
    if r:
        h = heal()
        expect(doc, r[0], r[1], r"median gRPC ([\d.]+) s, QUIC ([\d.]+) s",
               [statistics.median(h["grpc"]), statistics.median(h["quic"])])
        expect_source(doc, r[0], r[src], ["heal-e9084de.txt"])

    # Three real clients on loopback.
    for key, name in [("gRPC", "sync-grpc.json"), ("QUIC", "sync-quic.json")]:
        r = row(key, width=9)
        if r:
            j = load_json(name)
            pair = {p["pair"]: p["p99_us"] for p in j["pairs"]}
            expect(doc, f"three clients, {key}", r[1], r"([\d.]+) / \*\*([\d.]+)\*\* / ([\d.]+)", [j["p50_us"], j["p99_us"], j["max_us"]])
            for col, p in [(2, "B-A"), (3, "C-A"), (4, "C-B")]:
                expect(doc, f"three clients, {key}", r[col], r"([\d.]+)", [pair[p]], f"{p} p99")
            expect(doc, f"three clients, {key}", r[6], r"(\d+) ms", [max(j["lead_ms"])], "lead")
            expect(doc, f"three clients, {key}", r[7], r"pause ([\d.]+) / ([\d.]+) / ([\d.]+) ms", j["typed_to_applied_ms"]["pause"], "typed to applied")
            if j["pause_frame_spread"] != 0 and "on all three" in r[5]:
                problem(doc, f"three clients, {key}", "pause frame", r[5], f"spread {j['pause_frame_spread']}")
            expect_source(doc, f"three clients, {key}", r[-1], [name])

    # Sync as heard: the latest run of each kind; its commit is the runs log's line with its figures.
    for kind in ["calibrate", "grpc", "quic", "grpc-skew", "quic-skew"]:
        r = row(kind)
        if r:
            j = load_json(f"as-heard-{kind}.json")
            expect(doc, kind, r[2], r"([\d.]+) / ([\d.]+) / ([\d.]+)", [j["p50_us"], j["p99_us"], j["max_us"]])
            expect_source(doc, kind, r[3], [f"as-heard-{kind}.json"], [tsv_commit(kind, j)])

    # The simulator: every row of its table (scenario, peers, ..., source).
    simulated = 0
    for cells in rows(lines):
        if len(cells) != 10 or not cells[1].isdigit():
            continue
        simulated += 1
        scenario, peers = cells[0], cells[1]
        name = f"sim-scale-{peers}.json" if scenario == "scale" else f"sim-{scenario}.json"
        if not (RESULTS / name).exists():
            PROBLEMS.append(f"{doc}: simulator row '{scenario} {peers}': no {name}")
            continue
        j = load_json(name)
        key = f"simulator {scenario} {peers}"
        e, c = j["sync_error_us"], j["command_latency_ms"]
        expect(doc, key, cells[1], r"(\d+)", [j["peers"]], "peers")
        expect(doc, key, cells[2], r"(\d+)", [j["sim_seconds"]], "simulated s")
        expect(doc, key, cells[3], r"([\d.]+) / ([\d.]+) / ([\d.]+)", [e["p50"], e["p99"], e["max"]], "sync error")
        expect(doc, key, cells[4], r"([\d.]+) / ([\d.]+) / ([\d.]+)", [c["p50"], c["p99"], c["max"]], "command latency")
        expect(doc, key, cells[5], r"(\d+) of (\d+)", [j["commands_converged"], j["commands_issued"]], "commands converged")
        expect(doc, key, cells[6], r"([\d.]+)", [j["messages_per_peer_per_sec"]], "msgs/peer/s")
        expect(doc, key, cells[7], r"(\d+)", [j["invariant_violations"]], "violations")
        expect(doc, key, cells[8], r"([\d.]+)", [j["wall_seconds"]], "wall s")
        expect_source(doc, key, cells[9], [name])
    if simulated < 8:
        PROBLEMS.append(f"{doc}: the simulator table has {simulated} rows the check can read, not 8")

    # Player CPU.
    expect(doc, "Player CPU", "\n".join(lines), r"takes \*\*([\d.]+) ms of CPU = ([\d.]+) % of one core",
           [player_ms(), player_percent()])
    for part in ["decode 44.1 kHz 16-bit WAV", "render 44.1 kHz song, sinc", "render 48 kHz song at +500 ppm, sinc",
                 "render 44.1 kHz song, cubic"]:
        r = row(part)
        if r:
            expect(doc, part, r[1], r"([\d.]+) ms", [criterion_ms("one second of 48 kHz stereo output/" + part)])

    # One server, 50 clients.
    r = row("50")
    if r:
        j = load_json("server-50.json")
        expect(doc, "server 50", r[1], r"([\d.]+) MB", [j["song_bytes"] / 1e6], "song")
        expect(doc, "server 50", r[2], r"([\d.]+) s", [j["last_byte_s"]], "last byte")
        expect(doc, "server 50", r[3], r"([\d.]+) s", [j["median_last_byte_s"]], "median client done")
        expect(doc, "server 50", r[4], r"(\d+) ms / (\d+) ms", [j["median_first_byte_ms"], j["max_first_byte_ms"]], "first byte median / max")
        expect(doc, "server 50", r[5], r"(\d+) MB/s, ([\d.]+) MB/s per client", [j["throughput_mb_s"], j["throughput_mb_s"] / j["clients"]], "throughput")
        if j["identical"] is not True and "identical" in r[6]:
            problem(doc, "server 50", "bytes", r[6], "not identical")
        expect_source(doc, "server 50", r[-1], ["server-50.json"])

    # Heal.
    h = heal()
    for key, name in [("gRPC", "grpc"), ("QUIC", "quic")]:
        cells = row(key, width=5)
        if cells:
            v = sorted(h[name])
            got = [x.strip() for x in cells[1].split(",")]
            if len(got) != len(v) or not all(same(a, b) for a, b in zip(got, v)):
                problem(doc, f"heal {key}", "runs", cells[1], " ".join(map(str, v)))
            expect(doc, f"heal {key}", cells[2], r"([\d.]+)", [statistics.median(v)], "median")
            expect(doc, f"heal {key}", cells[3], r"([\d.]+)", [max(v)], "worst")

    # Before and after the reorganisation: the as-heard rows, run by run from the runs log.
    for key, run in [("as heard, gRPC, skewed client", "grpc-skew"), ("as heard, QUIC, skewed client", "quic-skew")]:
        r = row(key)
        if r:
            for col, commit in [(1, "37bf959"), (2, "a4223b4")]:
                v = [float(x["p99_us"]) for x in runs_tsv() if x["commit"] == commit and x["run"] == run]
                got = re.findall(r"\d+\.\d+", r[col])
                if len(got) != len(v) or not all(same(a, b) for a, b in zip(got, v)):
                    problem(doc, key, f"p99s at {commit}", r[col], ", ".join(map(str, v)))


def tsv_commit(kind, j):
    """The commit of the last runs-log line of this kind whose p50/p99/max are the JSON's."""
    found = None
    for x in runs_tsv():
        if x["run"] == kind and all(
            same(x[k], j[k]) for k in ["p50_us", "p99_us", "max_us"] if x[k]
        ):
            found = x["commit"]
    return found or "(no line of as-heard-runs.tsv)"


def player_line():
    return re.search(r"per second of audio: ([\d.]+) ms CPU = ([\d.]+) % of one core", player_text())


def player_ms():
    return float(player_line().group(1))


def player_percent():
    return float(player_line().group(2))


def check_readme(text=None):
    doc = "README.md"
    lines = doc_lines(doc, text)

    def row(*keys):
        return find_row(doc, lines, *keys)

    r = row("as heard, one client's clock skewed")
    src = 3
    if r:
        commits = commits_in(r[src])
        v = p99s(as_heard_runs(commits, "idle") + as_heard_runs(commits, "load"))
        expect(doc, r[0], r[1], r"under 100 µs in (\d+) of (\d+) runs, median ([\d.]+) µs",
               [sum(x < 100 for x in v), len(v), statistics.median(v)])
        idle = p99s(as_heard_runs(commits, "idle"))
        status = row("Sync as heard (`bench/as-heard`)")
        if status:
            expect(doc, status[0], status[1], r"under 100 µs in (\d+) of (\d+) runs, over the 50 µs idle target in (\d+) of (\d+)",
                   [sum(x < 100 for x in v), len(v), sum(x > 50 for x in idle), len(idle)])
        expect_source(doc, r[0], r[src], ["as-heard-runs.tsv"], [])
    r = row("… idle machine / two busy loops")
    if r:
        a, b = p99s(as_heard_runs(commits_in(r[src]), "idle")), p99s(as_heard_runs(commits_in(r[src]), "load"))
        expect(doc, r[0], r[1], r"p99 ([\d.]+)–([\d.]+) µs / ([\d.]+)–([\d.]+) µs", [min(a), max(a), min(b), max(b)])
        expect_source(doc, r[0], r[src], ["as-heard-runs.tsv"], [])
    r = row("as heard, the client stopped twice (its sound runs dry)")
    if r:
        by = {x["run"].split()[0]: float(x["p99_us"]) for x in as_heard_runs(commits_in(r[src]), "stall")}
        expect(doc, r[0], r[1], r"p99 gRPC ([\d.]+) µs, QUIC ([\d.]+) µs", [by.get("grpc-skew"), by.get("quic-skew")])
        expect_source(doc, r[0], r[src], ["as-heard-runs.tsv"], [])
    r = row("three real clients, loopback, clocks ±2 s ±200 ppm")
    if r:
        expect(doc, r[0], r[1], r"p99 gRPC ([\d.]+) µs, QUIC ([\d.]+) µs",
               [load_json("sync-grpc.json")["p99_us"], load_json("sync-quic.json")["p99_us"]])
        expect_source(doc, r[0], r[src], ["sync-grpc.json", "sync-quic.json"])
    r = row("simulator, 8 peers: LAN / Wi-Fi / lossy WAN")
    if r:
        names = ["sim-lan.json", "sim-wifi.json", "sim-wan-lossy.json"]
        expect(doc, r[0], r[1], r"p99 ([\d.]+) / ([\d.]+) / ([\d.]+) µs", [load_json(n)["sync_error_us"]["p99"] for n in names])
        expect_source(doc, r[0], r[src], names)
    r = row("simulator, 1000 peers, 60 s")
    if r:
        j = load_json("sim-scale-1000.json")
        expect(doc, r[0], r[1], r"([\d.]+) s on one core; ([\d.]+) messages", [j["wall_seconds"], j["messages_per_peer_per_sec"]])
        expect_source(doc, r[0], r[src], ["sim-scale-1000.json"])
    r = row("heal after a 4 s partition, real processes in namespaces")
    if r:
        h = heal()
        expect(doc, r[0], r[1], r"median gRPC ([\d.]+) s, QUIC ([\d.]+) s", [statistics.median(h["grpc"]), statistics.median(h["quic"])])
        expect_source(doc, r[0], r[src], ["heal-e9084de.txt"])
    r = row("player, decode + resample + render")
    if r:
        expect(doc, r[0], r[1], r"([\d.]+) % of one core", [player_percent()])
        expect_source(doc, r[0], r[src], ["player.txt"])
        status = row("Player (`player/`): decoding, resampling with fine rate control, device, null and WAV sinks")
        if status:
            expect(doc, status[0], status[1], r"([\d.]+) % of one core", [player_percent()])
    r = row("server, one 31.8 MB song to 50 clients")
    if r:
        expect(doc, r[0], r[1], r"in ([\d.]+) s", [load_json("server-50.json")["last_byte_s"]])
        expect_source(doc, r[0], r[src], ["server-50.json"])
    r = row("streamed start, a 20-minute / 2-hour FLAC never played before")
    if r:
        name = "stream-4746e1a.txt"
        table, commit = stream(name)
        a, b = table["20"], table["120"]
        expect(doc, r[0], r[1], r"first sound ([\d.]+) / ([\d.]+) ms after `play`; ([\d.]+) / ([\d.]+) MB resident",
               [float(a["first_sound_ms"]), float(b["first_sound_ms"]), float(a["steady_rss_mb"]), float(b["steady_rss_mb"])])
        expect_source(doc, r[0], r[src], [name], [commit])


def self_test():
    """A figure changed in a copy of each doc must be reported."""
    global PROBLEMS
    ok = True
    for doc, check, old, new in [
        ("BENCHMARKS.md", check_benchmarks, "| wifi | 8 | 600 | ", "| wifi | 8 | 601 | "),
        ("README.md", check_readme, "p99 gRPC 16.2 µs", "p99 gRPC 16.3 µs"),
    ]:
        text = (ROOT / doc).read_text()
        if old not in text:
            print(f"self-test: '{old}' not in {doc}")
            ok = False
            continue
        PROBLEMS = []
        check(text.replace(old, new, 1))
        if not PROBLEMS:
            print(f"self-test: changing '{old}' to '{new}' in {doc} went unnoticed")
            ok = False
    PROBLEMS = []
    return ok


def main():
    if "--self-test" in sys.argv[1:] and not self_test():
        return 1
    for doc, check in [("BENCHMARKS.md", check_benchmarks), ("README.md", check_readme)]:
        try:
            check()
        except Exception as e:  # a figure the check could not read is a failure, not a crash
            PROBLEMS.append(f"{doc}: the check stopped at a figure it could not read: {e!r}")
    for p in PROBLEMS:
        print(p)
    print(f"check-figures: {len(PROBLEMS)} mismatches")
    return 1 if PROBLEMS else 0


if __name__ == "__main__":
    sys.exit(main())
