package redistest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TLSServer is a standalone redis-server that also serves TLS, with a
// certificate for 127.0.0.1 and localhost signed by a CA made for it. Its
// plain port (Addr, URL) stays open for Stop, Restart and inspection; clients
// under test use the TLS port (TLSAddr, TLSURL).
type TLSServer struct {
	*Server
	tlsPort int
	// CAFile is the PEM file of the CA that signed the server's
	// certificate: what a client must trust.
	CAFile string
}

// StartTLS runs a redis-server with --tls-port (client certificates not
// required) and returns once it answers PING on its plain port. redis-server
// must be built with TLS, as Debian's 7.x is.
func StartTLS(tb testing.TB) *TLSServer {
	tb.Helper()
	dir := tb.TempDir()
	ca, cert, key := writeTLSFiles(tb, dir)
	s := &TLSServer{Server: newServer(tb, dir, nil), CAFile: ca}
	s.startOnFreePort(tb, func(int) []string {
		s.tlsPort = freePort(tb)
		return []string{
			"--tls-port", strconv.Itoa(s.tlsPort),
			"--tls-cert-file", cert,
			"--tls-key-file", key,
			"--tls-ca-cert-file", ca,
			"--tls-auth-clients", "no",
		}
	})
	return s
}

// TLSAddr returns the host:port of the TLS listener.
func (s *TLSServer) TLSAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.tlsPort)) }

// TLSURL returns rediss://127.0.0.1:TLSPORT/0.
func (s *TLSServer) TLSURL() string { return "rediss://" + s.TLSAddr() + "/0" }

// writeTLSFiles writes ca.pem, server.pem and server-key.pem into dir and
// returns their paths.
func writeTLSFiles(tb testing.TB, dir string) (ca, cert, key string) {
	tb.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "redistest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		tb.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "redistest"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		tb.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			tb.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server-key.pem", "PRIVATE KEY", keyDER)
}
