"""Verifies every DKIM-Signature of a message with dkimpy, a second implementation besides the
mailauth that signs, so that a test catches a signer and a verifier that share one bug.

Usage: /usr/bin/python3 dkim_verify.py '{"sel._domainkey.example.com": "v=DKIM1; k=rsa; p=..."}' < message

DNS is answered from the JSON object (name -> TXT value, trailing dot optional, any case) and
never from the network. Prints one line per signature; on failure also dkimpy's log for it.
Exit code: 0 when there is at least one signature and all pass, 1 when one fails, 2 on bad usage,
3 when dkimpy is missing, 4 when this script crashes (a caller must not read those two as "the
signature failed").
"""

from __future__ import annotations

import io
import json
import logging
import sys
import traceback

try:
    import dkim
except ImportError as e:
    print(f"{e}: run test/setup-deps.sh (Debian's python3-dkim, for /usr/bin/python3)", file=sys.stderr)
    sys.exit(3)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    records = {normalize(name): value for name, value in json.loads(sys.argv[1]).items()}
    message = sys.stdin.buffer.read()

    lookups: list[str] = []

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        # dkimpy asks for b"<selector>._domainkey.<domain>." with the trailing dot.
        value = records.get(normalize(name.decode("ascii", "replace")))
        lookups.append(f"{name.decode('ascii', 'replace')} -> {'TXT found' if value else 'NXDOMAIN'}")
        return value.encode() if value is not None else None

    log_buffer = io.StringIO()
    logger = logging.getLogger("dkim_verify")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(logging.StreamHandler(log_buffer))

    # minkey stays at dkimpy's default (1024 bits): the signer's keys must pass a real receiver.
    try:
        verifier = dkim.DKIM(message, logger=logger)
    except dkim.DKIMException as e:
        print(f"FAIL: the message does not parse ({type(e).__name__}: {e})")
        return 1
    signatures = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    if not signatures:
        print("FAIL: the message has no DKIM-Signature header")
        return 1

    all_ok = True
    for idx in range(len(signatures)):
        log_buffer.seek(0)
        log_buffer.truncate()
        lookups.clear()
        verifier.signature_fields = {}
        try:
            ok = verifier.verify(idx=idx, dnsfunc=dnsfunc)
            error = ""
        except Exception as e:  # a malformed signature or key is a failure like any other
            ok = False
            error = f" ({type(e).__name__}: {e})"
        fields = verifier.signature_fields or {}
        tags = " ".join(
            f"{tag}={fields[tag.encode()].decode('ascii', 'replace')}"
            for tag in ("d", "s", "a", "c")
            if tag.encode() in fields
        )
        print(f"signature {idx + 1}: {tags}: {'pass' if ok else 'FAIL'}{error}")
        if not ok:
            all_ok = False
            for lookup in lookups:
                print(f"  dns: {lookup}")
            for line in log_buffer.getvalue().splitlines():
                print(f"  log: {line}")
    return 0 if all_ok else 1


def normalize(name: str) -> str:
    return name.lower().rstrip(".")


if __name__ == "__main__":
    try:
        status = main()
    except Exception:
        traceback.print_exc()
        status = 4
    sys.exit(status)
