#!/usr/bin/env bash
# make_pki DIR NODE: a throwaway CA, a server certificate for 127.0.0.1 and a client certificate
# for system:node:NODE, for the fake kube-apiserver and its clients.
make_pki() {
  local dir=$1 node=$2
  mkdir -p "$dir"
  (
    cd "$dir" || exit 1
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=colo-test-ca -keyout ca.key -out ca.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.crt 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=system:node:$node/O=system:nodes" -keyout client.key -out client.csr 2>/dev/null
    openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out client.crt 2>/dev/null
  )
}

# write_kubeconfig FILE SERVER_URL CA_FILE token TOKEN_FILE | FILE SERVER_URL CA_FILE cert CERT KEY
write_kubeconfig() {
  local file=$1 server=$2 ca=$3 kind=$4 user
  if [[ $kind == token ]]; then
    user="    tokenFile: $5"
  else
    user="    client-certificate: $5
    client-key: $6"
  fi
  cat >"$file" <<KC
apiVersion: v1
kind: Config
current-context: fake
contexts:
- name: fake
  context: {cluster: fake, user: agent}
clusters:
- name: fake
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$ca")
users:
- name: agent
  user:
$user
KC
}
