package testutil

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// RedisTLSServer is a standalone redis-server that also serves TLS, with a
// certificate for 127.0.0.1 and localhost signed by a CA made for it. Its
// plain port (Addr, URL) stays open for Stop, Restart and inspection; clients
// under test use the TLS port (TLSAddr, TLSURL).
type RedisTLSServer struct {
	*RedisServer
	tlsPort int
	// CAFile is the PEM file of the CA that signed the server's
	// certificate: what a client must trust.
	CAFile string
}

// StartRedisTLS runs a redis-server with --tls-port (client certificates not
// required) and returns once it answers PING on its plain port. redis-server
// must be built with TLS, as Debian's 7.x is.
func StartRedisTLS(tb testing.TB) *RedisTLSServer {
	tb.Helper()
	dir := tb.TempDir()
	ca, cert, key := writeTLSFiles(tb, dir)
	s := &RedisTLSServer{RedisServer: newRedisServer(tb, dir, nil), CAFile: ca}
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
func (s *RedisTLSServer) TLSAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.tlsPort))
}

// TLSURL returns rediss://127.0.0.1:TLSPORT/0.
func (s *RedisTLSServer) TLSURL() string { return "rediss://" + s.TLSAddr() + "/0" }

// writeTLSFiles writes ca.pem, server.pem and server-key.pem into dir and
// returns their paths.
func writeTLSFiles(tb testing.TB, dir string) (ca, cert, key string) {
	tb.Helper()
	authority := NewCA(tb)
	certPEM, keyPEM := authority.Issue(tb, "redis-server")
	write := func(name string, content []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o600); err != nil {
			tb.Fatal(err)
		}
		return p
	}
	return write("ca.pem", authority.PEM()), write("server.pem", certPEM), write("server-key.pem", keyPEM)
}
