#!/usr/bin/env bash
# Installs, from Debian, what the tests need beyond node_modules: swaks (with the Perl TLS modules
# it needs for STARTTLS and implicit TLS), the SMTP client the submission tests send refusals
# with; dkimpy (python3-dkim, which
# pulls in python3-nacl for ed25519) and OpenDKIM (opendkim, whose `opendkim -t` verifies a file
# with keys from a TestPublicKeys file) for the independent DKIM verifiers in test/helpers/dkim.ts,
# and Postfix as the real receiving MTA of test/helpers/postfix.ts. Debian's opendkim package does
# not start its daemon without a configuration of ours, and the tests never run it as one.
# Idempotent and silent when everything is present; apt-get runs only when something is missing.
#
# Postfix is preseeded to "No configuration": the tests run private instances with a config
# directory of their own and need no system-wide MTA. That leaves /etc/postfix without a main.cf,
# so the system instance does not start (and take port 25), now or at boot. apt-get runs with
# --no-remove because postfix conflicts with other MTAs: replacing a developer's exim is not ours
# to decide, so apt fails instead.
#
# The checks use /usr/bin/python3 on purpose: a pyenv or venv python3 earlier on PATH does not see
# Debian's dist-packages, and test/helpers/dkim.ts runs /usr/bin/python3 for the same reason.
set -euo pipefail

missing=()
if ! /usr/bin/python3 -c 'import dkim, nacl' >/dev/null 2>&1; then
  missing+=(python3-dkim python3-nacl)
fi
if [ ! -x /usr/sbin/postfix ]; then
  missing+=(postfix)
fi
if [ ! -x /usr/sbin/opendkim ]; then
  missing+=(opendkim)
fi
if [ ! -x /usr/bin/swaks ] || ! /usr/bin/perl -MNet::SSLeay -MIO::Socket::SSL -e 1 >/dev/null 2>&1; then
  missing+=(swaks libnet-ssleay-perl libio-socket-ssl-perl)
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "test/setup-deps.sh: missing Debian packages: ${missing[*]}" >&2
  echo "install them as root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi

echo "test/setup-deps.sh: installing ${missing[*]}" >&2
# apt's chatter (debconf notes and the like) is shown only when something fails.
if ! log=$(
  echo 'postfix postfix/main_mailer_type select No configuration' | "${sudo[@]}" debconf-set-selections 2>&1 &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq 2>&1 &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends --no-remove \
      "${missing[@]}" 2>&1
); then
  echo "$log" >&2
  exit 1
fi

if ! /usr/bin/python3 -c 'import dkim, nacl' >/dev/null 2>&1; then
  echo "test/setup-deps.sh: installed ${missing[*]}, but /usr/bin/python3 still cannot import dkim and nacl" >&2
  exit 1
fi
if [ ! -x /usr/sbin/postfix ]; then
  echo "test/setup-deps.sh: installed ${missing[*]}, but /usr/sbin/postfix is still missing" >&2
  exit 1
fi
if [ ! -x /usr/sbin/opendkim ]; then
  echo "test/setup-deps.sh: installed ${missing[*]}, but /usr/sbin/opendkim is still missing" >&2
  exit 1
fi
if [ ! -x /usr/bin/swaks ]; then
  echo "test/setup-deps.sh: installed ${missing[*]}, but /usr/bin/swaks is still missing" >&2
  exit 1
fi
