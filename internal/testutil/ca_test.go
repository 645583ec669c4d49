package testutil

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
)

func TestCAIssue(t *testing.T) {
	ca := NewCA(t)
	certPEM, keyPEM := ca.Issue(t, "server")
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "server" {
		t.Errorf("common name %q", cert.Subject.CommonName)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: "127.0.0.1"}); err != nil {
		t.Errorf("not valid for 127.0.0.1 under the CA: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: NewCA(t).Pool}); err == nil {
		t.Error("valid under another CA")
	}
}
