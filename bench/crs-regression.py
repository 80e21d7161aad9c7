#!/usr/bin/env python3
"""Runs the OWASP CRS 3.3.x regression tests against a WAF and reports how many it blocks.

The CRS repository keeps one YAML file of ftw tests per rule under
tests/regression/tests/<RULE FILE>/<rule id>.yaml. This script sends every test stage's
request to --url the way ftw 1.3 (the runner CRS 3.3 uses) builds it, and reports, per rule
file (category) and in total:

  attack tests    the stage expects a rule id in the log (`log_contains: id "942100"`):
                  the share answered 403;
  in scope        the attack tests whose expected rule runs at --paranoia or below (the rule's
                  level is read from the rule files, --rules): the share answered 403;
  negative tests  the stage only expects a rule id to stay out of the log (`no_log_contains`):
                  false-positive checks, the share answered 403 (lower is better);
  status tests    the stage only expects a status (or a connection error): the share that got it.

The CRS tests were written for ModSecurity in detection-only mode at paranoia 4, where the log
says which rule matched; a blocking WAF at a lower paranoia level is expected to leave many
of them through. With --audit-log (a ModSecurity JSON audit log, `SecAuditEngine On`, of the
server behind --url) the script also reads which rules matched for each request and reports
how many attack tests logged their expected rule.

  python3 bench/crs-regression.py --crs /tmp/crs-3.3.4 --url http://127.0.0.1:8080 --paranoia 1
  python3 bench/crs-regression.py --crs DIR --url URL --json-out results.jsonl   # per-test details

--json-out writes one JSON object per test: file, title, category, kind, the ids it expects
(`expected`) and must not see (`not_expected`), the expected status, the status received (null:
no response), the paranoia level of its rule, and with --audit-log the rule ids that matched.

Accept-Charset: CRS 3.3.4 lists it as a restricted header (920450, critical), and about half of
the attack tests send it, so a faithful CRS 3.3.4 blocks them whatever their payload;
`--strip-header Accept-Charset` measures the payloads instead.

Host header: the tests already send `Host: localhost` (a numeric Host scores on every request,
CRS 920350), except the few that test the Host header itself (empty, numeric, off-domain);
those are sent as written unless --host replaces every Host header.

Needs Python 3.11 and PyYAML (`pip install pyyaml`, or Debian's python3-yaml); nothing else.
"""

import argparse
import base64
import json
import os
import re
import select
import socket
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

try:
    import yaml
except ImportError:
    sys.exit("crs-regression.py needs PyYAML: pip install pyyaml (or apt-get install python3-yaml)")

CATEGORIES = {
    "911": "method",
    "913": "scanner",
    "920": "protocol-enforcement",
    "921": "protocol-attack",
    "922": "multipart",
    "930": "lfi",
    "931": "rfi",
    "932": "rce",
    "933": "php",
    "934": "nodejs",
    "941": "xss",
    "942": "sqli",
    "943": "session-fixation",
    "944": "java",
}
RULE_ID = re.compile(r"\b(\d{6})\b")


# ------------------------------------------------------------------------------------ tests
def find_test_dir(crs):
    for candidate in (crs / "tests" / "regression" / "tests", crs / "regression" / "tests", crs):
        if any(candidate.glob("*/*.yaml")):
            return candidate
    sys.exit(f"no tests/regression/tests/*/*.yaml under {crs}")


def load_tests(test_dir, only):
    """Yields (rule file dir, yaml name, test title, stage index, stage) for every enabled stage."""
    for path in sorted(test_dir.glob("*/*.yaml")):
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        if not doc or not doc.get("meta", {}).get("enabled", True):
            continue
        for test in doc.get("tests") or []:
            if test.get("enabled", True) is False:
                continue
            title = str(test.get("test_title", "?"))
            if only and not (re.search(only, title) or re.search(only, path.parent.name)):
                continue
            for n, stage in enumerate(test.get("stages") or []):
                yield path.parent.name, path.name, title, n, stage["stage"]


def build_request(inp, host, strip=()):
    """The bytes ftw 1.3 would send for a stage's input (see ftw/ruleset.py and ftw/http.py),
    with every Host header set to `host` (if given) and the headers named in `strip` left out."""
    if inp.get("encoded_request") is not None:
        return base64.b64decode(inp["encoded_request"])
    if inp.get("raw_request") is not None:
        # ftw decodes backslash escapes in raw requests, then sends the result as UTF-8.
        raw = str(inp["raw_request"]).encode("utf-8").decode("unicode_escape")
        return raw.encode("utf-8")
    method = str(inp.get("method", "GET"))
    uri = str(inp.get("uri", "/"))
    version = "HTTP/1.1" if inp.get("version") is None else str(inp["version"])
    headers = dict(inp.get("headers") or {})
    for name in list(headers):
        if host is not None and name.lower() == "host":
            headers[name] = host
        if name.lower() in strip:
            del headers[name]
    data = inp.get("data", "")
    if data is None:
        data = ""
    if isinstance(data, list):
        data = "\r\n".join(str(d) for d in data)
    data = str(data)
    stop_magic = bool(inp.get("stop_magic", False))
    if data != "":
        if "Content-Type" not in headers and not stop_magic:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if headers.get("Content-Type") == "application/x-www-form-urlencoded" and not stop_magic:
            if unquote(data) == data:
                pairs = parse_qsl(data)
                if pairs:
                    data = urlencode(pairs)
        if "Content-Length" not in headers and not stop_magic:
            headers["Content-Length"] = len(data)
    head = f"{method} {uri} {version}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head += "\r\n"
    encoding = "utf-8"
    if data and "Content-Type" in headers and not stop_magic:
        m = re.search(r";\s?charset=(.*?)(?:$|;|\s)", str(headers["Content-Type"]))
        if m:
            choice = m.group(1).replace("-", "_").lower()
            try:
                "".encode(choice)
                encoding = choice
            except LookupError:
                pass
    return head.encode("utf-8") + data.encode(encoding)


def classify(out):
    """(kind, expected ids, ids that must not appear, expected statuses)."""
    expected = RULE_ID.findall(str(out["log_contains"])) if "log_contains" in out else []
    not_expected = RULE_ID.findall(str(out["no_log_contains"])) if "no_log_contains" in out else []
    status = out.get("status")
    statuses = status if isinstance(status, list) else ([status] if status is not None else [])
    if expected:
        kind = "attack"
    elif not_expected:
        kind = "negative"
    elif out.get("expect_error"):
        kind = "error"
    else:
        kind = "status"
    return kind, expected, not_expected, statuses


# ------------------------------------------------------------------------------------ rules
def rule_levels(rules_dir):
    """Rule id -> paranoia level, from the `TX:EXECUTING_PARANOIA_LEVEL "@lt N"` skip markers."""
    levels = {}
    if not rules_dir or not rules_dir.is_dir():
        return levels
    marker = re.compile(r'SecRule\s+TX:EXECUTING_PARANOIA_LEVEL\s+"@lt\s+(\d)"', re.I)
    rule_id = re.compile(r"""["',\s]id:['"]?(\d{6})""")
    for path in sorted(rules_dir.glob("*.conf")):
        level = 0
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            m = marker.search(line)
            if m:
                level = int(m.group(1))
                continue
            for rid in rule_id.findall(line):
                levels.setdefault(rid, level)
    return levels


# ------------------------------------------------------------------------------------ HTTP
def response_complete(buf, head_only):
    rest = buf
    while True:
        end = rest.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = rest[:end].decode("latin-1").lower().split("\r\n")
        status = parse_status(rest[:end])
        body = rest[end + 4:]
        if status is not None and 100 <= status < 200:
            rest = body
            continue
        if head_only or status in (204, 304):
            return True
        fields = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            fields[name.strip()] = value.strip()
        if "chunked" in fields.get("transfer-encoding", ""):
            return body.endswith(b"0\r\n\r\n")
        if fields.get("content-length", "").isdigit():
            return len(body) >= int(fields["content-length"])
        return False


def parse_status(buf):
    """The status of the first final response in buf, or None."""
    rest = buf
    while True:
        line = rest.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            return None
        status = int(parts[1])
        if not 100 <= status < 200:
            return status
        end = rest.find(b"\r\n\r\n")
        if end < 0:
            return None
        rest = rest[end + 4:]


def exchange(addr, request, timeout, head_only=False):
    """Sends request on a new connection; returns (status or None, local port, error or None)."""
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection(addr, timeout=timeout)
    except OSError as e:
        return None, None, f"connect: {e}"
    port = sock.getsockname()[1]
    buf = b""
    error = None
    try:
        try:
            sock.sendall(request)
        except OSError as e:
            error = f"send: {e}"  # the server may answer and close before taking it all
        while not response_complete(buf, head_only):
            left = deadline - time.monotonic()
            if left <= 0:
                error = error or "timeout"
                break
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                continue
            try:
                chunk = sock.recv(65536)
            except OSError as e:
                error = error or f"recv: {e}"
                break
            if not chunk:
                break
            buf += chunk
        # Half-close and wait for the server to close, so it has finished (and logged) the
        # request before the next one starts.
        try:
            sock.shutdown(socket.SHUT_WR)
            while time.monotonic() < deadline:
                ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
                if not ready or not sock.recv(65536):
                    break
        except OSError:
            pass
    finally:
        sock.close()
    status = parse_status(buf)
    if status is None and error is None:
        error = "no response" if not buf else "unparsable response"
    return status, port, error


# ------------------------------------------------------------------------------------ audit log
class AuditLog:
    """Rule ids per request from a ModSecurity JSON audit log.

    Entries carry the client's source port, but ports come round again within a run of a few
    thousand connections, so the entries are matched in order: requests go one at a time and
    one nginx logs them in the order it finishes them, so request i's entry is the next entry
    with its port, looking a few entries ahead (requests nginx refused itself have none)."""

    WINDOW = 8

    def __init__(self, path):
        self.path = Path(path)
        self.start = self.path.stat().st_size if self.path.exists() else 0

    def entries(self, addr, host, timeout):
        """Waits for a sentinel request's entry, then returns [(port, [ids])] in log order."""
        marker = f"/crs-regression-sentinel-{uuid.uuid4().hex}"
        request = (f"GET {marker} HTTP/1.1\r\nHost: {host or 'localhost'}\r\n"
                   "User-Agent: crs-regression\r\nAccept: */*\r\nConnection: close\r\n\r\n")
        exchange(addr, request.encode(), timeout)
        deadline = time.monotonic() + 30
        while True:
            with open(self.path, "rb") as f:
                f.seek(self.start)
                text = f.read()
            if marker.encode() in text or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        entries = []
        for line in text.splitlines():
            line = line.decode("utf-8", errors="replace").strip()
            if not line or marker in line:
                continue
            try:
                tx = json.loads(line)["transaction"]
                port = int(tx["client_port"])
                ids = [str(m.get("details", {}).get("ruleId", "")) for m in tx.get("messages") or []]
            except (ValueError, KeyError, TypeError):
                m = re.search(r'"client_port":(\d+)', line)
                if not m:
                    continue
                port = int(m.group(1))
                ids = re.findall(r'"ruleId":"(\d+)"', line)
            entries.append((port, sorted({i for i in ids if i})))
        return entries

    def assign(self, results, addr, host, timeout):
        """Sets results[i]["fired"]: the ids logged for it, or None if it has no entry."""
        entries = self.entries(addr, host, timeout)
        j = 0
        for r in results:
            r["fired"] = None
            port = r.get("port")
            if port is None:
                continue
            for k in range(j, min(j + self.WINDOW, len(entries))):
                if entries[k][0] == port:
                    r["fired"] = entries[k][1]
                    j = k + 1
                    break


# ------------------------------------------------------------------------------------ report
def pct(n, d):
    return f"{100.0 * n / d:5.1f} %" if d else "    -  "


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--crs", required=True, type=Path, help="CRS 3.3.x checkout (or its tests/regression/tests)")
    ap.add_argument("--url", required=True, help="the WAF, http://HOST:PORT")
    ap.add_argument("--paranoia", type=int, default=None, help="the WAF's paranoia level: also report the attack tests of rules at this level or below")
    ap.add_argument("--rules", type=Path, default=None, help="CRS rule files, for the rules' paranoia levels (default: <crs>/rules, else /usr/share/modsecurity-crs/rules)")
    ap.add_argument("--host", default=None, help="replace every Host header with this value")
    ap.add_argument("--strip-header", action="append", default=[], metavar="NAME",
                    help="leave this header out of every (non-raw) request; repeatable. "
                         "E.g. Accept-Charset: CRS 3.3.4 restricts it (920450, critical), and 1 in 2 "
                         "attack tests send it, so they are blocked whatever their payload")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per request (default 5, as ftw)")
    ap.add_argument("--only", default=None, help="only tests whose title or rule file matches this regex")
    ap.add_argument("--audit-log", default=None, help="ModSecurity JSON audit log of the server (SecAuditEngine On): report which rules matched")
    ap.add_argument("--json-out", type=Path, default=None, help="write one JSON line per test here")
    ap.add_argument("--show-missed", action="store_true", help="list the in-scope attack tests that were not answered 403")
    args = ap.parse_args()

    url = urlsplit(args.url)
    if url.scheme != "http" or not url.hostname:
        sys.exit("--url must look like http://127.0.0.1:8080")
    addr = (url.hostname, url.port or 80)
    test_dir = find_test_dir(args.crs)
    rules_dir = args.rules
    if rules_dir is None:
        for candidate in (args.crs / "rules", Path("/usr/share/modsecurity-crs/rules")):
            if candidate.is_dir():
                rules_dir = candidate
                break
    levels = rule_levels(rules_dir)
    audit = AuditLog(args.audit_log) if args.audit_log else None

    results = []
    started = time.monotonic()
    for rule_dir, file_name, title, stage_no, stage in load_tests(test_dir, args.only):
        inp, out = stage.get("input") or {}, stage.get("output") or {}
        kind, expected, not_expected, statuses = classify(out)
        try:
            request = build_request(inp, args.host, {h.lower() for h in args.strip_header})
        except (UnicodeError, ValueError) as e:
            results.append(dict(file=f"{rule_dir}/{file_name}", title=title, stage=stage_no, kind=kind, error=f"cannot build request: {e}"))
            continue
        head_only = str(inp.get("method", "GET")).upper() == "HEAD"
        status, port, error = exchange(addr, request, args.timeout, head_only)
        m = re.match(r"REQUEST-(\d{3})", rule_dir)
        prefix = m.group(1) if m else rule_dir
        pl = None
        if expected:
            known = [levels[i] for i in expected if i in levels]
            pl = min(known) if known else None
        results.append(dict(
            file=f"{rule_dir}/{file_name}", title=title, stage=stage_no,
            prefix=prefix, category=CATEGORIES.get(prefix, rule_dir), kind=kind,
            expected=expected, not_expected=not_expected, expected_status=statuses,
            status=status, error=error, paranoia=pl, port=port,
        ))
    elapsed = time.monotonic() - started

    if audit:
        audit.assign(results, addr, args.host, args.timeout)

    for r in results:
        r.pop("port", None)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            for r in results:
                f.write(json.dumps(r) + "\n")

    # Per category: attack, attack 403, in scope, in scope 403, negative, negative 403,
    # status tests, status ok, detected (expected id logged), detection checked.
    table = defaultdict(lambda: defaultdict(int))
    missed = []
    for r in results:
        row = table[(r.get("prefix", "?"), r.get("category", "?"))]
        blocked = r.get("status") == 403
        if r["kind"] == "attack":
            row["attack"] += 1
            row["attack_403"] += blocked
            if args.paranoia is not None and r.get("paranoia") is not None and r["paranoia"] <= args.paranoia:
                row["scope"] += 1
                row["scope_403"] += blocked
                if not blocked:
                    missed.append(r)
            if r.get("fired") is not None:
                row["checked"] += 1
                row["detected"] += any(i in r["fired"] for i in r["expected"])
        elif r["kind"] == "negative":
            row["negative"] += 1
            row["negative_403"] += blocked
            if r.get("fired") is not None:
                row["neg_checked"] += 1
                row["neg_fired"] += any(i in r["fired"] for i in r["not_expected"])
        else:
            row["status"] += 1
            ok = (r["status"] in r.get("expected_status", [])) if r["kind"] == "status" else (r["status"] is None)
            row["status_ok"] += ok
    total = defaultdict(int)
    for row in table.values():
        for k, v in row.items():
            total[k] += v

    scope_hdr = f"PL<={args.paranoia} 403" if args.paranoia is not None else ""
    print(f"{len(results)} test stages from {test_dir} in {elapsed:.1f} s against {args.url}")
    if args.strip_header:
        print(f"headers left out: {', '.join(args.strip_header)}")
    if args.paranoia is not None:
        print(f"rule paranoia levels from {rules_dir} ({len(levels)} rules)")
    hdr = f"{'category':22} {'attack tests 403':>24}"
    if args.paranoia is not None:
        hdr += f" {scope_hdr:>24}"
    if audit:
        hdr += f" {'expected rule logged':>24}"
    hdr += f" {'negative 403':>20} {'status tests ok':>18}"
    print(hdr)

    def line(name, row):
        s = f"{name:22} {row['attack_403']:>5}/{row['attack']:<5} {pct(row['attack_403'], row['attack']):>12}"
        if args.paranoia is not None:
            s += f" {row['scope_403']:>5}/{row['scope']:<5} {pct(row['scope_403'], row['scope']):>12}"
        if audit:
            s += f" {row['detected']:>5}/{row['checked']:<5} {pct(row['detected'], row['checked']):>12}"
        s += f" {row['negative_403']:>4}/{row['negative']:<4} {pct(row['negative_403'], row['negative']):>10}"
        s += f" {row['status_ok']:>4}/{row['status']:<4} {pct(row['status_ok'], row['status']):>8}"
        return s

    for (prefix, category), row in sorted(table.items()):
        print(line(f"{prefix} {category}", row))
    print(line("total", total))
    if audit:
        print(f"negative tests whose excluded rule matched anyway (audit log): "
              f"{total['neg_fired']}/{total['neg_checked']}; attack tests without an audit entry: "
              f"{total['attack'] - total['checked']}")
    errors = sum(1 for r in results if r.get("error") and r["kind"] != "error")
    if errors:
        print(f"{errors} requests got no usable response (connection error, timeout): counted as not blocked")
    if args.show_missed and missed:
        print(f"\nin-scope attack tests not answered 403 ({len(missed)}):")
        for r in missed:
            print(f"  {r['title']:24} expects {','.join(r['expected'])} (PL{r['paranoia']}) got {r['status']} {r.get('error') or ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
