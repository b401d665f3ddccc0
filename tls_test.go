package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *rsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a certificate and its PKCS#8 key, PEM encoded.
func (ca *testCA) issue(t *testing.T, name string, ips []net.IP, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: ips, DNSNames: []string{name},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8})
}

// TestIntegration_TLS: a real ZooKeeper with secureClientPort (Netty, PEM
// stores made here); hacron connects with its client certificate,
// verifies the server's, and elects; a wrong CA fails cleanly, naming the
// server.
func TestIntegration_TLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca := newTestCA(t, "hacron test CA")
	loopback := []net.IP{net.ParseIP("127.0.0.1")}
	srvCert, srvKey := ca.issue(t, "localhost", loopback, x509.ExtKeyUsageServerAuth)
	cliCert, cliKey := ca.issue(t, "hacron", nil, x509.ExtKeyUsageClientAuth)
	caFile := write("ca.pem", ca.pem)
	srvFile := write("server.pem", append(srvKey, srvCert...))
	cliCertFile, cliKeyFile := write("client.pem", cliCert), write("client.key", cliKey)
	other := newTestCA(t, "another CA")
	otherFile := write("other-ca.pem", other.pem)

	secure := freePort(t)
	_, port, _ := net.SplitHostPort(secure)
	ens := startZK(t, 1,
		withJVMFlags("-Dzookeeper.serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory"),
		withClassPath("/usr/share/java/netty-codec.jar", "/usr/share/java/netty-resolver.jar", "/usr/share/java/netty-transport-native-unix-common.jar"),
		withExtraConfig(
			"secureClientPort="+port,
			"secureClientPortAddress=127.0.0.1",
			"ssl.keyStore.location="+srvFile,
			"ssl.keyStore.type=PEM",
			"ssl.trustStore.location="+caFile,
			"ssl.trustStore.type=PEM",
		))
	_ = ens

	cluster := clusterName(t)
	env := append(hacronEnv(t, secure, cluster),
		"HACRON_ZK_TLS_CA="+caFile, "HACRON_ZK_TLS_CERT="+cliCertFile, "HACRON_ZK_TLS_KEY="+cliKeyFile)
	a, _ := startPair(t, env)
	if code := a.run("--name", "over-tls", "--", "true").wait(10 * time.Second); code != 0 {
		t.Errorf("a run over TLS: exit %d", code)
	}

	bad := append(hacronEnv(t, secure, cluster),
		"HACRON_ZK_TLS_CA="+otherFile, "HACRON_ZK_TLS_CERT="+cliCertFile, "HACRON_ZK_TLS_KEY="+cliKeyFile)
	r := startProc(t, "status with a wrong CA", bad, "status", "--session-timeout", "2s")
	code := r.wait(30 * time.Second)
	msg := r.errText()
	t.Logf("wrong CA: exit %d: %s", code, msg)
	if code != exitUsage || !strings.Contains(msg, secure) || !strings.Contains(msg, "certificate") || strings.Count(strings.TrimSpace(msg), "\n") > 1 {
		t.Errorf("a wrong CA: exit %d, %q; want 125 and one line naming %s and the certificate problem", code, msg, secure)
	}
}
