#!/usr/bin/env python3
"""Offline checks of deploy/ that need no Docker daemon, Helm or cluster.

Run by deploy/check.sh (which also runs systemd-analyze, kubectl kustomize and
real logstard processes on what this script extracts). Prints one line per
check, "ok: ...", "FAIL: ..." or "skip: ...", and exits 1 if any failed.

  deploy_check.py --repo DIR --out DIR [--logstard BIN] [--logstar BIN]

Writes into --out, for check.sh to start logstard with:
  *.args   one logstard argument per line (paths inside images mapped to
           files in the repository or in --out), one file per deployment way
"""
import argparse
import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys

try:
    import yaml
except ImportError:  # check.sh tests for this first and skips
    print("skip: python3-yaml is not installed")
    sys.exit(77)

failures = 0


def ok(msg):
    print(f"ok: {msg}")


def fail(msg):
    global failures
    failures += 1
    print(f"FAIL: {msg}")


def check(cond, msg, why=""):
    if cond:
        ok(msg)
    else:
        fail(f"{msg}{': ' + why if why else ''}")
    return cond


def daemon_fields(repo):
    """Field names of DaemonConfig, from the proto itself."""
    text = open(os.path.join(repo, "proto/logstar/v1/daemon.proto")).read()
    body = re.search(r"message DaemonConfig \{(.*?)\n\}", text, re.S).group(1)
    return set(re.findall(r"^\s*optional\s+\w+\s+(\w+)\s*=", body, re.M))


def flag_names(args):
    return [a[2:].split("=", 1)[0] for a in args if a.startswith("--")]


# ----------------------------------------------------------------- systemd
def check_systemd(repo, out, fields):
    d = os.path.join(repo, "deploy/systemd")
    unit = open(os.path.join(d, "logstard.service")).read()
    keys = {}
    for line in unit.splitlines():
        m = re.match(r"^(\w+)=(.*)$", line)
        if m:
            keys.setdefault(m.group(1), []).append(m.group(2))
    exec_start = shlex.split(keys["ExecStart"][0])
    args = exec_start[1:]
    check(exec_start[0] == "/usr/local/bin/logstard", "unit: ExecStart runs /usr/local/bin/logstard (where install.sh puts it)")
    bad = [f for f in flag_names(args) if f != "config" and f not in fields]
    check(not bad, "unit: ExecStart flags are DaemonConfig fields", f"unknown {bad}")
    state = keys.get("StateDirectory", [""])[0]
    check(f"--state_dir=/var/lib/{state}" in args, "unit: --state_dir is the StateDirectory",
          f"StateDirectory={state}, args {args}")
    conf_dir = keys.get("ConfigurationDirectory", [""])[0]
    config = [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    check(config == [f"/etc/{conf_dir}/logstard.textproto"],
          "unit: --config is logstard.textproto in the ConfigurationDirectory", f"{config}")
    install = open(os.path.join(d, "install.sh")).read()
    check("/etc/logstar/logstard.textproto" in install and "/etc/systemd/system/logstard.service" in install,
          "install.sh installs the config and unit where the unit looks for them")
    check(keys.get("Restart") == ["on-failure"], "unit: Restart=on-failure")
    check(keys.get("CapabilityBoundingSet") == [""] and keys.get("NoNewPrivileges") == ["yes"],
          "unit: no capabilities, NoNewPrivileges")
    check(keys.get("RestrictAddressFamilies") == ["AF_INET AF_INET6 AF_UNIX"], "unit: RestrictAddressFamilies")

    textproto = open(os.path.join(d, "logstard.textproto")).read()
    grace = 30.0
    m = re.search(r"^shutdown_grace_s:\s*([0-9.]+)", textproto, re.M)
    if m:
        grace = float(m.group(1))
    stop = keys.get("TimeoutStopSec", ["90s"])[0]
    stop_s = float(re.match(r"([0-9.]+)", stop).group(1)) * (60 if stop.endswith("min") else 1)
    check(stop_s > grace + 5, f"unit: TimeoutStopSec ({stop_s:g} s) > shutdown_grace_s ({grace:g} s) + 5 s for the saves")
    # Commented-out examples must be valid field names too (they get uncommented).
    commented = re.findall(r"^#\s*([a-z_]+):\s*\S", textproto, re.M)
    bad = [f for f in commented if f not in fields]
    check(commented and not bad, f"config: the {len(commented)} commented-out example fields are DaemonConfig fields",
          f"unknown {bad}")
    set_fields = re.findall(r"^([a-z_]+):", textproto, re.M)
    check(not [f for f in set_fields if f not in fields], "config: every set field is a DaemonConfig field",
          f"{set_fields}")
    mapped = [f"--config={os.path.join(d, 'logstard.textproto')}" if a.startswith("--config=") else a for a in args]
    open(os.path.join(out, "systemd.args"), "w").write("\n".join(mapped) + "\n")


# ------------------------------------------------------------------ docker
def dockerfile_instructions(text):
    lines, cur = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if s.startswith("#"):
            continue  # comment inside a continued instruction
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        lines.append(cur)
        cur = ""
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def dockerignore_excludes(patterns, path):
    """Docker's rule, simplified: the last matching pattern wins; a pattern
    matches the path or any of its parent directories."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for p in patterns:
        neg = p.startswith("!")
        pat = p[1:] if neg else p
        pat = pat.strip("/")
        regex = fnmatch.translate(pat).replace(".*.*/", "(.*/)?")
        for c in candidates:
            if fnmatch.fnmatch(c, pat) or re.fullmatch(regex, c) or (pat.startswith("**/") and fnmatch.fnmatch(c.split("/")[-1], pat[3:])):
                excluded = not neg
                break
    return excluded


def needed_packages(binaries):
    """Debian packages of the libraries the binaries name in DT_NEEDED."""
    pkgs = {}
    for b in binaries:
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                            subprocess.run(["readelf", "-d", b], capture_output=True, text=True).stdout)
        paths = {}
        for line in subprocess.run(["ldd", b], capture_output=True, text=True).stdout.splitlines():
            m = re.match(r"\s*(\S+) => (\S+)", line)
            if m:
                paths[m.group(1)] = m.group(2)
        for lib in needed:
            p = paths.get(lib)
            if p is None:
                pkgs[lib] = None
                continue
            r = subprocess.run(["dpkg", "-S", os.path.realpath(p)], capture_output=True, text=True)
            if r.returncode != 0:
                r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
            pkgs[lib] = r.stdout.split(":")[0] if r.returncode == 0 else None
    return pkgs


def check_docker(repo, out, fields, binaries):
    path = os.path.join(repo, "deploy/docker/Dockerfile")
    ins = dockerfile_instructions(open(path).read())
    stages, cur = [], None
    for word, rest in ins:
        if word == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            cur = {"image": m.group(1), "name": m.group(2), "ins": []}
            stages.append(cur)
        elif cur is not None:
            cur["ins"].append((word, rest))
    check(len(stages) == 2 and all(re.match(r"debian:bookworm(-slim)?$", s["image"]) for s in stages),
          "Dockerfile: two stages, both Debian bookworm", f"{[s['image'] for s in stages]}")
    build, runtime = stages[0], stages[-1]
    build_runs = " ".join(r for w, r in build["ins"] if w == "RUN")
    check("deploy/install-deps.sh" in build_runs and "deploy/build.sh" in build_runs
          and "-DLOGSTAR_BUILD_TESTS=OFF" in build_runs,
          "Dockerfile: the build stage runs deploy/install-deps.sh and deploy/build.sh, tests off")
    m = re.search(r"BUILD_DIR=(\S+)", build_runs)
    build_dir = m.group(1) if m else None
    # The runtime stage installs the Debian packages cpack makes from that
    # build (cmake/packaging.cmake), not the binaries themselves.
    check("cpack -G DEB" in build_runs, "Dockerfile: the build stage makes the Debian packages (cpack -G DEB)")
    deb_names = re.findall(r"CPACK_DEBIAN_\w+_PACKAGE_NAME (\S+)\)",
                           open(os.path.join(repo, "cmake/packaging.cmake")).read())

    ignore = [l.strip() for l in open(os.path.join(repo, ".dockerignore")) if l.strip() and not l.startswith("#")]
    check(all(dockerignore_excludes(ignore, p) for p in ["build/server/logstard", "build-asan/x", ".git/HEAD", "out/result.json"])
          and not any(dockerignore_excludes(ignore, p) for p in ["deploy/build.sh", "engine", "proto/logstar/v1/daemon.proto", "CMakeLists.txt"]),
          ".dockerignore: excludes build trees, .git and out/, keeps the sources")
    for s in stages:
        for word, rest in s["ins"]:
            if word not in ("COPY", "ADD"):
                continue
            toks = [t for t in rest.split() if not t.startswith("--")]
            frm = re.search(r"--from=(\S+)", rest)
            srcs = toks[:-1]
            if frm:
                good = build_dir and all(src.startswith(build_dir + "/") for src in srcs)
                rel = [src[len(build_dir) + 1:] for src in srcs] if good else []
                check(good and frm.group(1) == build["name"], f"Dockerfile: COPY --from={frm.group(1)} takes {rel} from the build stage's BUILD_DIR")
                for r in rel:
                    deb = re.fullmatch(r"packages/([a-z0-9.+-]+)_\*\.deb", r)
                    if deb:
                        check(deb.group(1) in deb_names, f"Dockerfile: {r} is a package cpack makes", f"not among {deb_names}")
                        continue
                    local = [b for b in binaries if b.endswith("/" + r)]
                    if binaries:
                        check(local, f"Dockerfile: {r} is a file deploy/build.sh makes", f"not among {binaries}")
            else:
                for src in srcs:
                    exists = os.path.exists(os.path.join(repo, src))
                    check(exists and (src == "." or not dockerignore_excludes(ignore, src)),
                          f"Dockerfile: COPY source {src} exists in the context and is not ignored")
    run_text = " ".join(r for w, r in runtime["ins"] if w == "RUN")
    m = re.search(r"apt-get install((?:\s+\S+)+?)\s*(?:&&|$)", run_text)
    pkgs = [p for p in m.group(1).split() if not p.startswith("-")] if m else []
    debs = [p for p in pkgs if p.endswith(".deb")]
    pkgs = [p for p in pkgs if not p.endswith(".deb")]
    check(sorted(re.sub(r"_.*", "", os.path.basename(d)) for d in debs) == sorted(deb_names),
          f"Dockerfile: the runtime stage installs the packages {deb_names}", f"{debs}")
    # Installed here (where logstard was built against them) means they exist;
    # ask apt-cache (seconds per call, so once) only about the others.
    r = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n"] + pkgs,
                       capture_output=True, text=True)
    known = {l.split()[0] for l in r.stdout.splitlines() if l.endswith(" installed")}
    rest = [p for p in pkgs if p not in known]
    if rest:
        r = subprocess.run(["apt-cache", "show", "--no-all-versions"] + rest, capture_output=True, text=True)
        known |= set(re.findall(r"^Package: (\S+)$", r.stdout, re.M))
    missing = [p for p in pkgs if p not in known]
    check(not missing, "Dockerfile: every runtime package exists in Debian (installed here, or apt-cache show)", f"not found: {missing}")
    if debs:
        # Their Depends cover the libraries (dpkg-shlibdeps), checked
        # against readelf by tests/package/deb_test.sh.
        print("note: runtime libraries come from the packages' Depends (tests/package/deb_test.sh)")
    elif binaries:
        need = needed_packages(binaries)
        base = {"libc6", "libgcc-s1"}  # in every Debian image
        unmapped = sorted(lib for lib, p in need.items() if p is None)
        lacking = sorted({p for p in need.values() if p and p not in pkgs and p not in base})
        check(not unmapped and not lacking,
              f"Dockerfile: the runtime packages cover the {len(need)} libraries logstard and logstar link",
              f"missing packages {lacking}, unresolved {unmapped}")
        extra = sorted(set(pkgs) - set(need.values()))
        if extra:
            print(f"note: runtime packages not linked directly: {extra}")
    else:
        print("skip: Dockerfile runtime packages vs the binaries' libraries (no binaries given)")
    users = [r for w, r in runtime["ins"] if w == "USER"]
    check(users and users[-1].split(":")[0] not in ("0", "root"), "Dockerfile: runs as a non-root USER", f"{users}")
    cmd = [json.loads(r) for w, r in runtime["ins"] if w == "CMD"]
    entry = [json.loads(r) for w, r in runtime["ins"] if w == "ENTRYPOINT"]
    args = cmd[-1] if cmd else []
    check(entry and entry[-1] == ["logstard"], "Dockerfile: ENTRYPOINT is logstard (exec form)")
    listen = [a.split("=", 1)[1] for a in args if a.startswith("--listen_address=")]
    port = listen[0].rsplit(":", 1)[1] if listen else None
    check(listen and listen[0].startswith("0.0.0.0:"), "Dockerfile: listens on 0.0.0.0 in the container", f"{listen}")
    exposed = " ".join(r for w, r in runtime["ins"] if w == "EXPOSE").split()
    check(port in exposed, f"Dockerfile: EXPOSE {port}", f"EXPOSE {exposed}")
    state = [a.split("=", 1)[1] for a in args if a.startswith("--state_dir=")]
    volumes = sum((json.loads(r) for w, r in runtime["ins"] if w == "VOLUME"), [])
    check(state and state[0] in volumes, "Dockerfile: the state dir is a VOLUME", f"{state} vs {volumes}")
    health = [r for w, r in runtime["ins"] if w == "HEALTHCHECK"]
    hc = json.loads(health[0].split("CMD", 1)[1]) if health else []
    check(hc[:2] == ["logstar", "status"] and f"127.0.0.1:{port}" in hc,
          "Dockerfile: HEALTHCHECK runs logstar status on the listening port", f"{hc}")
    bad = [f for f in flag_names(args) if f not in fields]
    check(not bad, "Dockerfile: CMD flags are DaemonConfig fields", f"unknown {bad}")
    open(os.path.join(out, "docker.args"), "w").write("\n".join(args) + "\n")


# -------------------------------------------------------------- kubernetes
def get(d, dotted):
    for k in dotted.split("."):
        if not isinstance(d, dict) or k not in d:
            raise KeyError(dotted)
        d = d[k]
    return d


def check_helm_and_k8s(repo, out, fields):
    chart_dir = os.path.join(repo, "deploy/helm/logstard")
    chart = yaml.safe_load(open(os.path.join(chart_dir, "Chart.yaml")))
    check(chart.get("apiVersion") == "v2" and chart.get("name") == "logstard"
          and re.match(r"^\d+\.\d+\.\d+", str(chart.get("version", ""))) and chart.get("appVersion"),
          "Chart.yaml: apiVersion v2, name, SemVer version, appVersion")
    values = yaml.safe_load(open(os.path.join(chart_dir, "values.yaml")))
    ok("values.yaml parses")
    tdir = os.path.join(chart_dir, "templates")
    templates = {f: open(os.path.join(tdir, f)).read() for f in sorted(os.listdir(tdir))}
    defined = set(re.findall(r'define "([^"]+)"', "".join(templates.values())))
    for name, text in templates.items():
        opens, closes = text.count("{{"), text.count("}}")
        refs = set(re.findall(r"\.Values\.([A-Za-z0-9_.]+)", text))
        missing = []
        for r in refs:
            try:
                get(values, r)
            except KeyError:
                missing.append(r)
        incl = set(re.findall(r'include "([^"]+)"', text)) - defined
        check(opens == closes and not missing and not incl,
              f"templates/{name}: balanced actions, every .Values path exists, every include is defined",
              f"{{{{ {opens} vs }}}} {closes}, missing values {sorted(missing)}, undefined {sorted(incl)}")
    bad = [k for k in values["config"] if k not in fields]
    check(not bad, "values.yaml: config keys are DaemonConfig fields", f"unknown {bad}")
    owned = {"listen_address", "state_dir", "metrics_address"} & set(values["config"])
    check(not owned, "values.yaml: config leaves listen_address/state_dir/metrics_address to the chart's flags", f"{owned}")
    check(values["terminationGracePeriodSeconds"] > values["config"].get("shutdown_grace_s", 30),
          "values.yaml: terminationGracePeriodSeconds > config.shutdown_grace_s")
    json.dump(values["config"], open(os.path.join(out, "helm-values.json"), "w"), indent=2)

    # The plain manifests: parse, then compare with what the chart renders for its defaults.
    kdir = os.path.join(repo, "deploy/k8s")
    objs = {}
    for f in sorted(os.listdir(kdir)):
        if not f.endswith((".yaml", ".yml")):
            continue
        try:
            docs = [d for d in yaml.safe_load_all(open(os.path.join(kdir, f))) if d]
        except yaml.YAMLError as e:
            fail(f"deploy/k8s/{f} parses as YAML: {e}")
            continue
        ok(f"deploy/k8s/{f} parses as YAML ({len(docs)} document{'s' if len(docs) != 1 else ''})")
        for d in docs:
            objs[d["kind"]] = d
    for f in ("Chart.yaml", "values.yaml"):
        yaml.safe_load(open(os.path.join(chart_dir, f)))
    kust = objs.pop("Kustomization", None)
    check(kust and sorted(kust["resources"]) == sorted(f for f in os.listdir(kdir) if f.endswith(".yaml") and f != "kustomization.yaml"),
          "deploy/k8s/kustomization.yaml lists every manifest")
    dep, svc, cm, pvc = (objs.get(k) for k in ("Deployment", "Service", "ConfigMap", "PersistentVolumeClaim"))
    if not all((dep, svc, cm, pvc)):
        fail(f"deploy/k8s has a Deployment, Service, ConfigMap and PVC (found {sorted(objs)})")
        return
    pod = dep["spec"]["template"]
    c = pod["spec"]["containers"][0]
    port = values["service"]["port"]
    mport = values["metrics"]["port"]
    tag = values["image"]["tag"] or chart["appVersion"]
    sel = dep["spec"]["selector"]["matchLabels"]
    check(all(pod["metadata"]["labels"].get(k) == v for k, v in sel.items())
          and svc["spec"]["selector"] == sel, "k8s: selector labels match the pod's and the Service's")
    check(dep["spec"]["replicas"] == values["replicaCount"] and dep["spec"]["strategy"] == values["strategy"],
          "k8s = chart: replicas, strategy")
    check(c["image"] == f"{values['image']['repository']}:{tag}" and c["imagePullPolicy"] == values["image"]["pullPolicy"],
          "k8s = chart: image", f"{c['image']}")
    check(pod["spec"]["terminationGracePeriodSeconds"] == values["terminationGracePeriodSeconds"],
          "k8s = chart: terminationGracePeriodSeconds")
    check(pod["spec"]["securityContext"] == values["podSecurityContext"] and c["securityContext"] == values["securityContext"],
          "k8s = chart: pod and container securityContext")
    check(c["securityContext"].get("readOnlyRootFilesystem") is True and pod["spec"]["securityContext"].get("runAsNonRoot") is True
          and c["securityContext"].get("allowPrivilegeEscalation") is False,
          "k8s: non-root, read-only root filesystem, no privilege escalation")
    check(c["resources"] == values["resources"], "k8s = chart: resources")
    want_args = ["--config=/etc/logstar/logstard.json", f"--listen_address=0.0.0.0:{port}"]
    if values["persistence"]["enabled"]:
        want_args.append("--state_dir=/var/lib/logstar")
    if values["metrics"]["enabled"]:
        want_args.append(f"--metrics_address=0.0.0.0:{mport}")
    check(c["args"] == want_args, "k8s = chart: container args", f"{c['args']} vs {want_args}")
    bad = [f for f in flag_names(c["args"]) if f != "config" and f not in fields]
    check(not bad, "k8s: container flags are DaemonConfig fields", f"unknown {bad}")
    probes = values["probes"]
    for kind in ("startup", "readiness", "liveness"):
        p = c.get(f"{kind}Probe", {})
        want = {"grpc": {"port": port, "service": probes["service"]}, **probes[kind]}
        check(p == want, f"k8s = chart: {kind}Probe is a gRPC health probe on port {port}", f"{p} vs {want}")
    cports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(cports == {"grpc": port, "metrics": mport}, "k8s = chart: container ports")
    sports = {p["name"]: (p["port"], p["targetPort"], p.get("appProtocol")) for p in svc["spec"]["ports"]}
    check(sports.get("grpc") == (port, "grpc", values["service"]["appProtocol"]) and svc["spec"]["type"] == values["service"]["type"]
          and ("clusterIP" in svc["spec"]) == values["service"]["headless"],
          "k8s = chart: Service type, gRPC port and appProtocol")
    check(pvc["spec"]["accessModes"] == [values["persistence"]["accessMode"]]
          and pvc["spec"]["resources"]["requests"]["storage"] == values["persistence"]["size"],
          "k8s = chart: PVC access mode (ReadWriteMany) and size")
    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    check(vols["state"]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
          and vols["config"]["configMap"]["name"] == cm["metadata"]["name"]
          and mounts.get("state") == "/var/lib/logstar" and mounts.get("config") == "/etc/logstar",
          "k8s: the Deployment mounts the ConfigMap at /etc/logstar and the PVC at the state dir")
    try:
        config = json.loads(cm["data"]["logstard.json"])
    except (KeyError, ValueError) as e:
        fail(f"k8s: the ConfigMap holds logstard.json as JSON: {e}")
        return
    check(config == values["config"], "k8s = chart: the ConfigMap's config is values.yaml's config")
    check(pod["spec"]["terminationGracePeriodSeconds"] > config.get("shutdown_grace_s", 30),
          "k8s: terminationGracePeriodSeconds > shutdown_grace_s")
    path = os.path.join(out, "logstard.json")
    open(path, "w").write(cm["data"]["logstard.json"])
    mapped = [f"--config={path}" if a.startswith("--config=") else a for a in c["args"]]
    open(os.path.join(out, "k8s.args"), "w").write("\n".join(mapped) + "\n")


def check_exec_stack(binaries):
    """MemoryDenyWriteExecute=yes kills a process whose libraries need an
    executable stack; none of ours may."""
    libs = set(binaries)
    for b in binaries:
        for line in subprocess.run(["ldd", b], capture_output=True, text=True).stdout.splitlines():
            m = re.match(r"\s*\S+ => (/\S+)", line)
            if m:
                libs.add(os.path.realpath(m.group(1)))
    bad = []
    for lib in sorted(libs):
        hdr = subprocess.run(["readelf", "-lW", lib], capture_output=True, text=True).stdout
        m = re.search(r"GNU_STACK(?:\s+\S+){5}\s+(\S+)", hdr)
        if m is None or "E" in m.group(1):
            bad.append(lib)
    check(not bad, f"unit: MemoryDenyWriteExecute is safe: none of {len(libs)} binaries and libraries asks for an executable stack",
          f"{bad}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--logstard")
    ap.add_argument("--logstar")
    a = ap.parse_args()
    binaries = [b for b in (a.logstard, a.logstar) if b]
    fields = daemon_fields(a.repo)
    check(len(fields) >= 17, f"daemon.proto: {len(fields)} DaemonConfig fields found")
    for name, fn in (("systemd", lambda: check_systemd(a.repo, a.out, fields)),
                     ("docker", lambda: check_docker(a.repo, a.out, fields, binaries)),
                     ("kubernetes", lambda: check_helm_and_k8s(a.repo, a.out, fields))):
        try:
            fn()
        except Exception as e:  # a malformed file must fail the check, not crash it unreported
            fail(f"{name} checks crashed: {type(e).__name__}: {e}")
    if binaries:
        check_exec_stack(binaries)
    else:
        print("skip: executable-stack check (no binaries given)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
