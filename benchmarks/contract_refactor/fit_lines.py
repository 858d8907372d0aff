"""Line count of each estimator's ``fit``: total, and without its docstring (run from the repo root)."""

import ast
import pathlib
import sys

if sys.argv[1:2] in (["-h"], ["--help"]):
    print(__doc__)
    sys.exit(0)

for path in sorted(pathlib.Path("skood").glob("*.py")):
    tree = ast.parse(path.read_text())
    for cls in [n for n in tree.body if isinstance(n, ast.ClassDef)]:
        for fn in cls.body:
            if isinstance(fn, ast.FunctionDef) and fn.name == "fit":
                total = fn.end_lineno - fn.lineno + 1
                doc = fn.body[0]
                d = (
                    (doc.end_lineno - doc.lineno + 1)
                    if isinstance(doc, ast.Expr)
                    and isinstance(getattr(doc, "value", None), ast.Constant)
                    else 0
                )
                print(f"{path.name:14s} {cls.name:28s} {total:4d} {total - d:4d}")
