"""Checks the documentation against the tree (ctest: docs_check).

    python3 docs/check_docs.py [--strict] [REPO_ROOT]

In README.md, docs/*.md and the READMEs of engine/, proto/, server/:
  - every relative link resolves, and a #anchor names a heading of the
    target (GitHub's heading slugs);
  - repository paths in backticks (`engine/...`, `tests/...`, ...) exist,
    and so do the file names a part's README gives relative to its folder
    (`log/refine.h`, `convert.h`); reported as warnings, errors with --strict.
In README.md:
  - the first code block is the two commands, `bash deploy/demo.sh` and
    `bash deploy/test.sh`;
  - it has at most 250 lines;
  - its Python and C++ quickstart blocks are the tested programs
    (clients/examples/quickstart.py from `import sys`, quickstart.cc from
    `int main`), so the README cannot drift from what the tests run.
Exit code 0 when everything holds, 1 otherwise, listing each problem.
"""
import glob
import os
import re
import sys

DOCS = ["README.md", "docs/*.md", "engine/README.md", "proto/README.md", "server/README.md"]
PATH_IN_BACKTICKS = re.compile(
    r"`((?:engine|server|proto|clients|tests|deploy|docs)/[A-Za-z0-9_./-]+)`")
FILE_IN_BACKTICKS = re.compile(r"`([A-Za-z0-9_./-]+\.(?:h|cc|inc|proto|py|sh|txt))`")


def without_code(text):
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def heading_slugs(path):
    slugs, seen = set(), {}
    for line in without_code(open(path, encoding="utf-8").read()).splitlines():
        if not line.startswith("#"):
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", line.lstrip("#").strip())
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        slugs.add(slug if n == 0 else f"{slug}-{n}")
    return slugs


def check_links(root, name, errors, warnings):
    path = os.path.join(root, name)
    text = open(path, encoding="utf-8").read()
    for m in re.finditer(r"\]\(([^)\s]+)\)", without_code(text)):
        link = m.group(1)
        if re.match(r"^[a-z]+:", link):  # http:, mailto:
            continue
        target, _, anchor = link.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), target)) if target else path
        if not os.path.exists(resolved):
            errors.append(f"{name}: link to a missing file: {link}")
        elif anchor and (not resolved.endswith(".md") or anchor not in heading_slugs(resolved)):
            errors.append(f"{name}: link to a missing heading: {link}")
    for m in PATH_IN_BACKTICKS.finditer(text):
        if not os.path.exists(os.path.join(root, m.group(1).rstrip("/"))):
            warnings.append(f"{name}: path not in the tree: {m.group(1)}")
    # A part's README (engine/, proto/, server/) names its files relative to
    # its folder: `log/refine.h`, `convert.h`, `frame.proto`.
    folder = os.path.dirname(name)
    if name.endswith("/README.md"):
        files = [os.path.relpath(os.path.join(d, f), os.path.join(root, folder))
                 for d, _, fs in os.walk(os.path.join(root, folder)) for f in fs]
        for m in FILE_IN_BACKTICKS.finditer(text):
            token = m.group(1)
            if PATH_IN_BACKTICKS.fullmatch(f"`{token}`"):
                continue  # a repository path, checked above
            if not any(f == token or f.endswith("/" + token) for f in files):
                warnings.append(f"{name}: file not in {folder}/: {token}")


def code_blocks(text, language):
    return re.findall(r"^```" + re.escape(language) + r"\n(.*?)^```", text, flags=re.S | re.M)


def check_readme(root, errors):
    text = open(os.path.join(root, "README.md"), encoding="utf-8").read()
    lines = text.splitlines()
    if len(lines) > 250:
        errors.append(f"README.md: {len(lines)} lines, at most 250")
    first = re.search(r"^```\w*\n(.*?)^```", text, flags=re.S | re.M)
    commands = [l.split("#")[0].strip() for l in first.group(1).splitlines()] if first else []
    if commands != ["bash deploy/demo.sh", "bash deploy/test.sh"]:
        errors.append(f"README.md: the first commands are {commands}, not the two deploy commands")
    for language, file, start in (("python", "quickstart.py", "import sys"),
                                  ("c++", "quickstart.cc", "int main(")):
        program = open(os.path.join(root, "clients/examples", file), encoding="utf-8").read()
        tested = program[program.index(start):]
        if tested not in code_blocks(text, language):
            errors.append(f"README.md: no ```{language} block equal to clients/examples/{file} "
                          f"from `{start}` on")


def main():
    args = [a for a in sys.argv[1:] if a != "--strict"]
    strict = "--strict" in sys.argv[1:]
    root = args[0] if args else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    errors, warnings = [], []
    for pattern in DOCS:
        for name in sorted(glob.glob(pattern, root_dir=root)):
            check_links(root, name, errors, warnings)
    check_readme(root, errors)
    if strict:
        errors += warnings
    else:
        for w in warnings:
            print(f"warning: {w}")
    for e in errors:
        print(f"error: {e}")
    print("FAIL" if errors else "PASS")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
