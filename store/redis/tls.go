package redis

import (
	"crypto/x509"
	"fmt"
	"os"
)

// loadCAFile reads the PEM CA certificates of a Redis URL's tls_ca_file.
// Its errors name the parameter and the file, never the URL (which may hold
// a password).
func loadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("query parameter tls_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("query parameter tls_ca_file %s: no PEM certificate found", path)
	}
	return pool, nil
}
