#!/bin/sh
# Makes the test CA and the certificate of the local TLS receivers (tests/receivers.py)
# for 127.0.0.1, ::1 and localhost, valid for 100 years. The CA's key is thrown
# away: nothing else is ever signed with it. Run from tests/certs/.
set -eu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$work/ca-key.pem" -out ca.pem -days 36500 -subj "/CN=RadiantGo test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout server-key.pem -out "$work/server.csr" -subj "/CN=localhost"
cat > "$work/server.ext" <<END
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
END
openssl x509 -req -in "$work/server.csr" -CA ca.pem -CAkey "$work/ca-key.pem" \
    -CAcreateserial -CAserial "$work/ca.srl" -days 36500 -extfile "$work/server.ext" -out server.pem
