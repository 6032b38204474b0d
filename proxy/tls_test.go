package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/auth"
	"github.com/keygate/keygate/internal/echo"
	"github.com/valyala/fasthttp"
)

// TestTLSFromFiles: with cert and key files the listener speaks TLS and
// the upstream is told the request came over https.
func TestTLSFromFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keygate test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)

	f := newFixture(t, func(_ *fixture, o *Options) { o.CertFile, o.KeyFile = certFile, keyFile })
	secret := f.keys.add(t, &auth.Key{ID: "key_tls", User: "u", Enabled: true})
	c := &fasthttp.HostClient{Addr: f.addr, IsTLS: true, TLSConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // self-signed test cert
	req, resp := &fasthttp.Request{}, &fasthttp.Response{}
	req.SetRequestURI("https://" + f.addr + "/x")
	req.Header.Set("X-API-Key", secret)
	if err := c.Do(req, resp); err != nil {
		t.Fatal(err)
	}
	var e echo.Request
	if err := json.Unmarshal(resp.Body(), &e); err != nil || resp.StatusCode() != 200 {
		t.Fatalf("status %d body %s: %v", resp.StatusCode(), resp.Body(), err)
	}
	if p := e.Values("X-Forwarded-Proto"); len(p) != 1 || p[0] != "https" {
		t.Errorf("X-Forwarded-Proto = %q, want https", p)
	}
	if _, err := New(Options{Keys: f.keys, CertFile: filepath.Join(dir, "missing"), KeyFile: keyFile,
		Routes: []Route{{Name: "r", Targets: []string{"http://127.0.0.1:1"}}}}); err == nil {
		t.Errorf("New accepted a missing certificate file")
	}
}
