#!/usr/bin/env bash
# Makes the test certificates for TLS with the openssl command line (installed
# with apt-get when missing). Usage: scripts/tls-certs.sh DIR
#
# Files written into DIR (every key is EC P-256 in PKCS#8 PEM, "BEGIN PRIVATE
# KEY"; every certificate is a single PEM leaf or root, no intermediates):
#   ca.pem, ca.key                  the test CA; signs everything below except
#                                   other-client
#   other-ca.pem, other-ca.key      an unrelated CA, for wrong-CA tests
#   server.pem, server.key          CN=localhost, SANs DNS:localhost and
#                                   IP:127.0.0.1, serverAuth, valid 1 year
#   expired.pem, expired.key        like server, but valid only from 2 days ago
#                                   to 1 day ago ("certificate has expired")
#   wrong-host.pem, wrong-host.key  SAN DNS:example.invalid only (no IP SAN),
#                                   for host-name mismatch tests
#   client.pem, client.key          CN=device-42, SANs DNS:device-42.example,
#                                   URI:spiffe://gopro.test/device/42 and
#                                   email:device-42@example.invalid,
#                                   clientAuth, for mutual TLS
#   other-client.pem, other-client.key
#                                   the same client names, signed by other-ca
#
# Idempotent: when DIR already holds the whole set, still valid for at least a
# day, nothing is touched (servers using the files keep working). Otherwise a
# new set is made in a temporary directory and moved into DIR only once all of
# it exists, so a failed run never leaves certificates from two CAs mixed.
set -euo pipefail

[ $# -eq 1 ] && [ -n "$1" ] || { echo "usage: scripts/tls-certs.sh DIR" >&2; exit 2; }
dir=$1

if ! command -v openssl >/dev/null; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y openssl
fi

names=(ca other-ca server expired wrong-host client other-client)

up_to_date() {
  local n
  for n in "${names[@]}"; do
    [ -s "$dir/$n.pem" ] && [ -s "$dir/$n.key" ] || return 1
  done
  for n in ca other-ca server wrong-host client other-client; do
    openssl x509 -in "$dir/$n.pem" -noout -checkend 86400 >/dev/null || return 1
  done
  openssl verify -CAfile "$dir/ca.pem" "$dir/server.pem" "$dir/client.pem" >/dev/null 2>&1 &&
    openssl verify -CAfile "$dir/other-ca.pem" "$dir/other-client.pem" >/dev/null 2>&1
}

mkdir -p "$dir"
if up_to_date; then
  echo "tls-certs: $dir is up to date"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One configuration for everything: req needs a [req] section, `openssl ca`
# (used only for the expired certificate, because openssl 3.0's req and x509
# cannot set a start date) needs [ca], and each kind of certificate has its
# extension section. Leaves say CA:FALSE and carry key identifiers, which
# webpki (rustls) and Go expect of a well-formed chain.
cat >"$work/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = DNS:localhost, IP:127.0.0.1
[wrong_host_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = DNS:example.invalid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = DNS:device-42.example, URI:spiffe://gopro.test/device/42, email:device-42@example.invalid
[ca]
default_ca = backdated
[backdated]
database = $work/index.txt
new_certs_dir = $work
rand_serial = yes
default_md = sha256
policy = any_name
unique_subject = no
[any_name]
commonName = supplied
EOF
: >"$work/index.txt"

cnf=("-config" "$work/openssl.cnf")

# quiet CMD...: runs an openssl command whose progress chatter on stderr
# ("Signature ok", "Certificate Details:") is shown only when it fails.
quiet() {
  "$@" 2>"$work/stderr" || { cat "$work/stderr" >&2; return 1; }
}

key() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/$1.key"
}

# serial: 16 random bytes; RFC 5280 wants serials unique per CA, which a
# counter file shared between runs would not give after a regeneration.
serial() { echo "0x$(openssl rand -hex 16)"; }

# root NAME CN
root() {
  key "$1"
  openssl req "${cnf[@]}" -x509 -new -key "$work/$1.key" -subj "/CN=$2" -days 3650 -sha256 \
    -set_serial "$(serial)" -extensions ca_ext -out "$work/$1.pem"
}

# leaf NAME CN ISSUER EXTENSIONS
leaf() {
  key "$1"
  openssl req "${cnf[@]}" -new -key "$work/$1.key" -subj "/CN=$2" -out "$work/$1.csr"
  quiet openssl x509 -req -in "$work/$1.csr" -CA "$work/$3.pem" -CAkey "$work/$3.key" \
    -set_serial "$(serial)" -days 365 -sha256 \
    -extfile "$work/openssl.cnf" -extensions "$4" -out "$work/$1.pem"
}

root ca "gopro test CA"
root other-ca "gopro unrelated test CA"
leaf server localhost ca server_ext
leaf wrong-host example.invalid ca wrong_host_ext
leaf client device-42 ca client_ext
leaf other-client device-42 other-ca client_ext

key expired
openssl req "${cnf[@]}" -new -key "$work/expired.key" -subj "/CN=localhost" -out "$work/expired.csr"
quiet openssl ca "${cnf[@]}" -batch -notext -cert "$work/ca.pem" -keyfile "$work/ca.key" \
  -in "$work/expired.csr" -out "$work/expired.pem" -extensions server_ext \
  -startdate "$(date -u -d '2 days ago' +%Y%m%d%H%M%SZ)" \
  -enddate "$(date -u -d '1 day ago' +%Y%m%d%H%M%SZ)"

for n in "${names[@]}"; do
  chmod 644 "$work/$n.pem"
  chmod 600 "$work/$n.key"
  mv -f "$work/$n.key" "$work/$n.pem" "$dir/"
done
echo "tls-certs: wrote ${#names[@]} certificates and keys into $dir"
