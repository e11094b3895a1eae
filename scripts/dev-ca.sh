#!/bin/sh
# A development certificate authority made with openssl, for TLS and mTLS
# between the programs (never for production: the CA key sits next to the
# certificates).
#
#   scripts/dev-ca.sh [DIR] [DAYS]        default ./var/tls, 30 days
#
# Creates DIR/ca.pem and its key DIR/ca/ca.key once (kept when they exist;
# the key sits in its own 0700 folder so DIR can be mounted into containers
# without it), then issues, each
# as NAME.pem (certificate, then the CA: a chain) and NAME.key:
#   server   the gRPC server: serverAuth, names localhost, server, 127.0.0.1, ::1
#   gateway  the gateway: serverAuth (HTTPS) and clientAuth (mTLS to the
#            server), names localhost, gateway, 127.0.0.1, ::1
#   client   the CLI and other callers: clientAuth
# Running it again re-issues (renews) the three with the same CA; files are
# replaced by rename, so a program reloading on SIGHUP never reads half a
# file. Keys are EC P-256, mode 0600 (for the containers' uid 10001, see
# README.md, "TLS").
set -eu

dir=${1:-./var/tls}
days=${2:-30}
umask 077
mkdir -p "$dir/ca"
chmod 0700 "$dir/ca"
tmp=$(mktemp -d "$dir/ca/.dev-ca.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

if [ ! -s "$dir/ca.pem" ] || [ ! -s "$dir/ca/ca.key" ]; then
	openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/ca.key"
	openssl req -new -x509 -key "$tmp/ca.key" -sha256 -days "$((days * 4))" \
		-subj "/CN=Device Assignment dev CA $(date -u +%Y%m%dT%H%M%S)" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		-out "$tmp/ca.pem"
	mv "$tmp/ca.key" "$dir/ca/ca.key"
	mv "$tmp/ca.pem" "$dir/ca.pem"
fi

# issue NAME EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]
issue() {
	name=$1 eku=$2 san=${3:-}
	openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/$name.raw"
	openssl pkcs8 -topk8 -nocrypt -in "$tmp/$name.raw" -out "$tmp/$name.key"
	openssl req -new -key "$tmp/$name.key" -subj "/CN=device-assignment-$name" \
		-out "$tmp/$name.csr"
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature"
		echo "extendedKeyUsage=$eku"
		[ -z "$san" ] || echo "subjectAltName=$san"
	} >"$tmp/$name.ext"
	openssl x509 -req -in "$tmp/$name.csr" -CA "$dir/ca.pem" \
		-CAkey "$dir/ca/ca.key" -CAcreateserial -CAserial "$tmp/ca.srl" \
		-sha256 -days "$days" -extfile "$tmp/$name.ext" \
		-out "$tmp/$name.crt" 2>/dev/null
	cat "$tmp/$name.crt" "$dir/ca.pem" >"$tmp/$name.pem"
	# Key first: a reload that reads between the two renames sees a new
	# key with the old certificate, refuses the pair and keeps the old.
	mv "$tmp/$name.key" "$dir/$name.key"
	mv "$tmp/$name.pem" "$dir/$name.pem"
}

issue server serverAuth "DNS:localhost,DNS:server,DNS:server-pg,IP:127.0.0.1,IP:::1"
issue gateway serverAuth,clientAuth "DNS:localhost,DNS:gateway,IP:127.0.0.1,IP:::1"
issue client clientAuth
echo "dev CA in $dir: ca.pem; server, gateway, client .pem/.key"
