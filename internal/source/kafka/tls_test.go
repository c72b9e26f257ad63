package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
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

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files.
type testPKI struct {
	caFile             string
	certFile, keyFile  string // client
	server             tls.Certificate
	pool               *x509.CertPool
	otherCA            string // a CA that signed nothing here
	garbage, nonexists string
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(1)
	sign := func(tmpl *x509.Certificate, parent *x509.Certificate, key *ecdsa.PrivateKey, signer *ecdsa.PrivateKey) []byte {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER := sign(caTmpl, nil, caKey, caKey)
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{caFile: write("ca.pem", "CERTIFICATE", caDER), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)

	srvKey := newKey()
	srvDER := sign(&x509.Certificate{Subject: pkix.Name{CommonName: "broker"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, srvKey, caKey)
	p.server = tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}

	cliKey := newKey()
	cliDER := sign(&x509.Certificate{Subject: pkix.Name{CommonName: "cdcflow"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, cliKey, caKey)
	p.certFile = write("client.pem", "CERTIFICATE", cliDER)
	keyDER, err := x509.MarshalECPrivateKey(cliKey)
	if err != nil {
		t.Fatal(err)
	}
	p.keyFile = write("client.key", "EC PRIVATE KEY", keyDER)

	otherKey := newKey()
	p.otherCA = write("other-ca.pem", "CERTIFICATE", sign(&x509.Certificate{Subject: pkix.Name{CommonName: "other CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, otherKey, otherKey))
	p.garbage = filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(p.garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.nonexists = filepath.Join(dir, "missing.pem")
	return p
}

func TestTLSConfigErrors(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name                  string
		ca, cert, key, wantIn string
	}{
		{"missing ca file", p.nonexists, "", "", "tls ca_file: open " + p.nonexists},
		{"ca file without PEM", p.garbage, "", "", "no PEM certificate found"},
		{"cert without key", p.caFile, p.certFile, "", "must be set together"},
		{"key does not parse", p.caFile, p.certFile, p.garbage, "tls cert_file " + p.certFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := TLSConfig(tt.ca, tt.cert, tt.key, false)
			if err == nil || !strings.Contains(err.Error(), tt.wantIn) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantIn)
			}
		})
	}
}

// TestMutualTLS reads from a broker that requires TLS with a client
// certificate; a wrong CA or a missing client certificate fails at New.
func TestMutualTLS(t *testing.T) {
	const topic = "tls"
	p := newPKI(t)
	client, err := TLSConfig(p.caFile, p.certFile, p.keyFile, false)
	if err != nil {
		t.Fatal(err)
	}
	server := &tls.Config{Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: p.pool, MinVersion: tls.VersionTLS12}
	k := newCluster(t, []kgo.Opt{kgo.DialTLSConfig(client.Clone())}, kfake.TLS(server), kfake.SeedTopics(1, topic))
	k.produce(t, topic, 0, 0, 5, 0)

	opts := k.options("g-tls", topic)
	opts.TLS = client
	s := open(t, opts)
	readAll(t, s, 5)

	wrongCA, err := TLSConfig(p.otherCA, p.certFile, p.keyFile, false)
	if err != nil {
		t.Fatal(err)
	}
	noCert, err := TLSConfig(p.caFile, "", "", false)
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*tls.Config{"wrong CA": wrongCA, "no client certificate": noCert} {
		t.Run(name, func(t *testing.T) {
			bad := opts
			bad.TLS = cfg
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if s, err := New(ctx, bad); err == nil {
				_ = s.Close(ctx)
				t.Fatal("New connected")
			} else if !strings.Contains(err.Error(), "connect to kafka brokers") {
				t.Fatalf("error %v does not say what failed", err)
			}
		})
	}
}
