package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	kplain "github.com/twmb/franz-go/pkg/sasl/plain"
	kscram "github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluice-dev/sluice/ingest"
)

// TestScramRFC7677 checks the SCRAM client against the SCRAM-SHA-256
// exchange published in RFC 7677, section 3.
func TestScramRFC7677(t *testing.T) {
	m := &scram{name: ingest.SASLScramSHA256, hash: sha256.New, user: "user", pass: "pencil", nonce: "rOprNGfwEbeRWgbNEkqO"}
	ctx := context.Background()
	sess, first, err := m.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(first) != "n,,n=user,r=rOprNGfwEbeRWgbNEkqO" {
		t.Fatalf("client-first = %q", first)
	}
	done, final, err := sess.Next(ctx, []byte("r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"))
	if err != nil || done {
		t.Fatalf("Next(server-first) = %v, %v", done, err)
	}
	want := "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	if string(final) != want {
		t.Fatalf("client-final = %q\nwant           %q", final, want)
	}
	// A server that does not know the password cannot sign the exchange.
	if _, _, err := sess.Next(ctx, []byte("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")); err == nil {
		t.Fatal("a wrong server signature was accepted")
	}
	done, _, err = sess.Next(ctx, []byte("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="))
	if err != nil || !done {
		t.Fatalf("Next(server-final) = %v, %v; want done", done, err)
	}
}

// pki is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files.
type pki struct {
	dir                          string
	ca, serverCert, serverKey    string
	clientCert, clientKey, other string // other is a CA that signed nothing here
	server                       tls.Certificate
	pool                         *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(p.dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(1)
	cert := func(tmpl *x509.Certificate, parent *x509.Certificate, pub, signer any) (*x509.Certificate, []byte) {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c, der
	}
	caTmpl := func(name string) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{CommonName: name}, IsCA: true, BasicConstraintsValid: true,
			KeyUsage: x509.KeyUsageCertSign}
	}
	caKey := key()
	ca, caDER := cert(caTmpl("sluice test CA"), nil, &caKey.PublicKey, caKey)
	p.ca = write("ca.pem", "CERTIFICATE", caDER)
	otherKey := key()
	_, otherDER := cert(caTmpl("another CA"), nil, &otherKey.PublicKey, otherKey)
	p.other = write("other-ca.pem", "CERTIFICATE", otherDER)

	leaf := func(name string, usage x509.ExtKeyUsage, ips ...net.IP) (certPath, keyPath string, pair tls.Certificate) {
		k := key()
		_, der := cert(&x509.Certificate{Subject: pkix.Name{CommonName: name}, IPAddresses: ips, DNSNames: []string{name},
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}, ca, &k.PublicKey, caKey)
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		certPath, keyPath = write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kder)
		pair, err = tls.LoadX509KeyPair(certPath, keyPath)
		if err != nil {
			t.Fatal(err)
		}
		return certPath, keyPath, pair
	}
	p.serverCert, p.serverKey, p.server = leaf("kafka.test", x509.ExtKeyUsageServerAuth, net.IPv4(127, 0, 0, 1))
	p.clientCert, p.clientKey, _ = leaf("sluice-client", x509.ExtKeyUsageClientAuth)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(ca)
	return p
}

// securedCluster starts kfake with opts and a one-partition testTopic.
func securedCluster(t *testing.T, opts ...kfake.Opt) []string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(1, testTopic, "dlq")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// roundTrip produces three records with a franz-go client built from
// kopts, consumes them with a Source and commits, writes a dead letter
// with a DeadLetterWriter and reads it back: every connection sluice opens
// goes through sec.
func roundTrip(t *testing.T, brokers []string, sec ingest.Security, kopts ...kgo.Opt) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ConsumeTopics("dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, kopts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := range 3 {
		recs = append(recs, &kgo.Record{Topic: testTopic, Value: record(0, i)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}

	d, err := Dialer(sec)
	if err != nil {
		t.Fatal(err)
	}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	cfg := testConfig(t, brokers, "g-secure", mem)
	cfg.Dialer = d
	s := newSource(t, cfg)
	defer s.Close()
	for n := 0; n < 3; {
		b := next(t, s, 10*time.Second)
		checkBatch(t, b)
		n += int(b.Record.NumRows())
		b.Record.Release()
		ack(t, b, nil)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Committed[0] != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("committed %v, want partition 0 at 3", s.Stats().Committed)
		}
		time.Sleep(20 * time.Millisecond)
	}

	w, err := NewDeadLetterWriterWith(brokers, "dlq", sec)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	dl := ingest.DeadLetter{Topic: testTopic, Offset: 9, Value: []byte("not json"), Time: time.Now(), Reason: "malformed"}
	if err := w.Write(ctx, []ingest.DeadLetter{dl}); err != nil {
		t.Fatalf("dead-letter write: %v", err)
	}
	fs := cl.PollFetches(ctx)
	if err := fs.Err(); err != nil {
		t.Fatalf("read dead letter back: %v", err)
	}
	if got := fs.Records(); len(got) != 1 || string(got[0].Value) != "not json" {
		t.Fatalf("dead-letter topic holds %v", got)
	}
}

// failsFast checks that NewSource and the dead-letter writer fail within a
// few seconds, instead of hanging, with errors containing wantSource and
// wantWriter.
func failsFast(t *testing.T, brokers []string, sec ingest.Security, wantSource, wantWriter string) {
	t.Helper()
	d, err := Dialer(sec)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, brokers, "g-denied", memory.NewGoAllocator())
	cfg.Dialer = d
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	start := time.Now()
	s, err := NewSource(ctx, cfg)
	if err == nil {
		s.Close()
		t.Fatal("NewSource succeeded")
	}
	if ctx.Err() != nil {
		t.Fatalf("NewSource took %s and ended with the deadline: %v", time.Since(start), err)
	}
	t.Logf("NewSource: %v", err)
	if !strings.Contains(err.Error(), wantSource) {
		t.Errorf("NewSource error %q does not say %q", err, wantSource)
	}
	w, err := NewDeadLetterWriterWith(brokers, "dlq", sec)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	err = w.Write(ctx, []ingest.DeadLetter{{Topic: testTopic, Value: []byte("x"), Reason: "r"}})
	t.Logf("dead-letter write: %v", err)
	if err == nil {
		t.Error("dead-letter write succeeded")
	} else if ctx.Err() != nil {
		t.Errorf("dead-letter write ended with the deadline: %v", err)
	} else if !strings.Contains(err.Error(), wantWriter) {
		t.Errorf("dead-letter write error %q does not say %q", err, wantWriter)
	}
}

func TestSecurityTLS(t *testing.T) {
	p := newPKI(t)
	brokers := securedCluster(t, kfake.TLS(&tls.Config{
		Certificates: []tls.Certificate{p.server},
		ClientCAs:    p.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}))
	clientPair, err := tls.LoadX509KeyPair(p.clientCert, p.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	kopt := kgo.DialTLSConfig(&tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{clientPair}, MinVersion: tls.VersionTLS12})
	good := ingest.Security{TLS: ingest.TLS{Enabled: true, CAFile: p.ca, CertFile: p.clientCert, KeyFile: p.clientKey}}

	t.Run("mutual TLS", func(t *testing.T) { roundTrip(t, brokers, good, kopt) })
	t.Run("unknown CA", func(t *testing.T) {
		sec := good
		sec.TLS.CAFile = p.other
		failsFast(t, brokers, sec, "certificate signed by unknown authority", "certificate signed by unknown authority")
	})
	t.Run("wrong server name", func(t *testing.T) {
		sec := good
		sec.TLS.ServerName = "elsewhere.test"
		failsFast(t, brokers, sec, "not elsewhere.test", "not elsewhere.test")
	})
	t.Run("no client certificate", func(t *testing.T) {
		failsFast(t, brokers, ingest.Security{TLS: ingest.TLS{Enabled: true, CAFile: p.ca}}, "certificate required", "certificate required")
	})
	t.Run("plaintext to a TLS listener", func(t *testing.T) {
		failsFast(t, brokers, ingest.Security{}, "broker closed the connection", "broker closed the connection")
	})
}

func TestSecuritySASL(t *testing.T) {
	const user, pass = "sluice", "correct horse"
	tests := []struct {
		mech string
		kopt kgo.Opt
	}{
		{ingest.SASLPlain, kgo.SASL(kplain.Auth{User: user, Pass: pass}.AsMechanism())},
		{ingest.SASLScramSHA256, kgo.SASL(kscram.Auth{User: user, Pass: pass}.AsSha256Mechanism())},
		{ingest.SASLScramSHA512, kgo.SASL(kscram.Auth{User: user, Pass: pass}.AsSha512Mechanism())},
	}
	for _, tt := range tests {
		t.Run(tt.mech, func(t *testing.T) {
			brokers := securedCluster(t, kfake.EnableSASL(), kfake.Superuser(tt.mech, user, pass))
			pwFile := filepath.Join(t.TempDir(), "password")
			if err := os.WriteFile(pwFile, []byte(pass+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			sec := ingest.Security{SASL: ingest.SASL{Mechanism: tt.mech, Username: user, PasswordFile: pwFile}}
			roundTrip(t, brokers, sec, tt.kopt)

			wrong := ingest.Security{SASL: ingest.SASL{Mechanism: tt.mech, Username: user, Password: "wrong"}}
			failsFast(t, brokers, wrong, "SASL Authentication Failed", "check that the security settings match")
			var err error
			if d, _ := Dialer(wrong); d != nil {
				_, err = d.LookupPartitions(context.Background(), "tcp", brokers[0], testTopic)
			}
			if !errors.Is(err, kafka.SASLAuthenticationFailed) {
				t.Errorf("wrong password: err = %v, want kafka.SASLAuthenticationFailed", err)
			}
		})
	}
}

func TestSecurityDialerRejects(t *testing.T) {
	tests := []struct {
		name string
		sec  ingest.Security
		want string
	}{
		{"invalid", ingest.Security{SASL: ingest.SASL{Mechanism: "OAUTHBEARER", Username: "u", Password: "p"}}, "unknown sasl.mechanism"},
		{"unset password variable", ingest.Security{SASL: ingest.SASL{Mechanism: ingest.SASLPlain, Username: "u", PasswordEnv: "SLUICE_TEST_UNSET_VARIABLE"}}, "SLUICE_TEST_UNSET_VARIABLE is not set"},
		{"missing CA file", ingest.Security{TLS: ingest.TLS{Enabled: true, CAFile: "/nonexistent/ca.pem"}}, "tls.ca_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Dialer(tt.sec); !errors.Is(err, ingest.ErrSecurity) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Dialer = %v, want ErrSecurity saying %q", err, tt.want)
			}
			if _, err := NewDeadLetterWriterWith([]string{"localhost:9092"}, "dlq", tt.sec); !errors.Is(err, ingest.ErrSecurity) {
				t.Errorf("NewDeadLetterWriterWith = %v, want ErrSecurity", err)
			}
		})
	}
}
