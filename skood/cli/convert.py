"""``skood convert``: re-save a pickle / joblib model (or an old signed ``--save`` file) in
skood's pickle-free format (:mod:`skood.io`).

``skood score --save`` writes skood's format and ``--model`` reads nothing else: loading a pickle
can run arbitrary code. Model files written by skood before that format were pickles signed with a
key private to their user (HMAC-SHA256); ``skood convert`` checks that signature, on the machine
that signed them, before it unpickles one to re-save it. Any other pickle is unpickled only with
``--trust-pickle``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from skood._files import atomic_file, check_output, read_input_file

__all__ = ["add_parser", "run"]

_OLD_MODEL_MAGIC = b"skood-model-v1\n"
_MIN_KEY_BYTES = 32


def add_parser(subparsers) -> None:
    p_convert = subparsers.add_parser(
        "convert",
        help="re-save a pickle / joblib model in skood's format (.skood)",
        description="Re-save a model in skood's pickle-free format. A file saved by `skood score "
        "--save` before skood 0.3 (a signed pickle) is unpickled only if its signature matches "
        "this user's key; any other pickle only with --trust-pickle.",
    )
    p_convert.add_argument("old", metavar="OLD", help="the pickle / joblib / signed model file")
    p_convert.add_argument("new", metavar="NEW", help="the .skood file to write")
    p_convert.add_argument(
        "--trust-pickle",
        action="store_true",
        help="unpickle OLD although skood did not sign it (only for a file you trust)",
    )
    p_convert.add_argument("--force", action="store_true", help="overwrite an existing NEW")


def run(args) -> int:
    """Re-save a pickle / joblib model (or an old signed `--save` file) in skood's format."""
    import io

    import joblib

    import skood

    data = read_input_file(args.old, "OLD")
    check_output(args.new, [args.old], what="NEW", replace=args.force)
    if data.startswith(_OLD_MODEL_MAGIC):
        model = _unpickle_signed(args.old, data)
    elif args.trust_pickle:
        model = joblib.load(io.BytesIO(data))
    else:
        raise ValueError(
            f"{args.old} is not a signed `skood score --save` file; unpickling it can run any "
            "code in it. If you (or someone you trust) wrote it, pass --trust-pickle."
        )
    with atomic_file(args.new, replace=args.force) as f:  # never over a file made meanwhile
        skood.save(model, f)
    print(f"Wrote {args.new} (skood's format: no pickle)", file=sys.stderr)
    return 0


def _signing_key() -> bytes:
    """This user's key for the old signed pickles (``$SKOOD_MODEL_KEY``, else the config file)."""
    home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "skood"
    path = home / "model-signing-key"
    if os.environ.get("SKOOD_MODEL_KEY"):
        key, source = os.environ["SKOOD_MODEL_KEY"].strip().encode(), "$SKOOD_MODEL_KEY"
    elif path.exists():
        # a regular file, read no further than its size: a FIFO or /dev/zero is refused
        key, source = read_input_file(path, "the signing key").strip(), str(path)
    else:
        raise ValueError(
            f"no signing key ({path} or $SKOOD_MODEL_KEY): this machine signed no skood model "
            "file, so the signature of this one cannot be checked. Convert it where it was saved."
        )
    # A short key (an empty file is b"") lets anyone forge a signature, and a forged signature
    # would get a pickle unpickled: code run. skood wrote 64-character keys.
    if len(key) < _MIN_KEY_BYTES:
        raise ValueError(
            f"the signing key in {source} is {len(key)} bytes long; a key shorter than "
            f"{_MIN_KEY_BYTES} bytes proves nothing, so no file is unpickled with it. Use the key "
            "that signed the file, on the machine that signed it."
        )
    return key


def _unpickle_signed(path, data: bytes):
    """The object in an old `skood score --save` file, once its signature is checked."""
    import hashlib
    import hmac
    import io

    import joblib

    tag, _, payload = data[len(_OLD_MODEL_MAGIC) :].partition(b"\n")
    expected = hmac.new(_signing_key(), payload, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(tag, expected):
        raise ValueError(
            f"{path} was not signed with this user's key, or was changed since: refusing to "
            "unpickle it, since loading a pickle can run arbitrary code. Convert it on the "
            "machine that saved it, or refit the model."
        )
    return joblib.load(io.BytesIO(payload))
