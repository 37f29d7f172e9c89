package backend

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/storage"
	"github.com/sluice-dev/sluice/storage/fs"
	"github.com/sluice-dev/sluice/storage/s3"
	"github.com/sluice-dev/sluice/storage/s3/s3test"
)

func TestParseS3(t *testing.T) {
	for _, tc := range []struct {
		url     string
		want    s3.Config
		wantErr string
	}{
		{url: "s3://feat?endpoint=127.0.0.1:9000",
			want: s3.Config{Bucket: "feat", Endpoint: "127.0.0.1:9000"}},
		{url: "s3://feat/eu/card-fraud/?endpoint=minio:9000&region=eu-central-1&secure=true&path_style=1",
			want: s3.Config{Bucket: "feat", Prefix: "eu/card-fraud", Endpoint: "minio:9000", Region: "eu-central-1", Secure: true, PathStyle: true}},
		{url: "s3://lin?endpoint=s3.amazonaws.com&secure=true&sse=sse-kms&kms_key=arn:aws:kms:k&retention_mode=COMPLIANCE&retention_days=365",
			want: s3.Config{Bucket: "lin", Endpoint: "s3.amazonaws.com", Secure: true, SSE: s3.SSEKMS, KMSKeyID: "arn:aws:kms:k", RetentionMode: s3.RetentionCompliance, RetentionDays: 365}},
		{url: "s3://feat", wantErr: "no endpoint"},
		{url: "s3:///prefix?endpoint=h:1", wantErr: "no bucket"},
		{url: "s3://feat?endpoint=h:1&endpont=x", wantErr: `unknown parameter "endpont"`},
		{url: "s3://feat?endpoint=h:1&endpoint=h:2", wantErr: "given 2 times"},
		{url: "s3://feat?endpoint=h:1&secure=yes", wantErr: `secure="yes"`},
		{url: "s3://feat?endpoint=h:1&retention_days=x", wantErr: "retention_days"},
		{url: "s3://feat?endpoint=h:1&retention_days=30", wantErr: "without a retention mode"},
		{url: "s3://feat?endpoint=h:1&sse=sse-kms", wantErr: "kms key id"},
		{url: "s3://ak:sk@feat?endpoint=h:1", wantErr: "credentials in the URL"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseS3(u)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("config =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	for _, tc := range []struct{ url, wantErr string }{
		{"file://data/features", "relative path?"},
		{"file:data/features", "relative path"},
		{"file:", "not absolute"},
		{"file:///tmp/x?sync=1", "no parameters"},
		{"/tmp/x", "no scheme"},
		{"gs://bucket/x", `unknown scheme "gs"`},
		{"s3://b?endpoint=h:1&foo=bar", "unknown parameter"},
		{"::", "missing protocol scheme"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			_, err := Open(t.Context(), tc.url)
			if !errors.Is(err, ErrBadURL) {
				t.Fatalf("err = %v, want ErrBadURL", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestOpenFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	for _, u := range []string{"file://" + filepath.ToSlash(dir), "file://localhost" + filepath.ToSlash(dir)} {
		t.Run(u, func(t *testing.T) {
			st, err := Open(t.Context(), u)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := st.(*fs.Store); !ok {
				t.Fatalf("Open returned %T, want *fs.Store", st)
			}
			if err := st.Put(t.Context(), "k/v", strings.NewReader("1"), 1); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, "k", "v")); err != nil {
				t.Fatalf("object not at the URL's path: %v", err)
			}
		})
	}
}

func TestOpenS3(t *testing.T) {
	endpoint, _ := s3test.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", s3test.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3test.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	st, err := Open(t.Context(), "s3://"+s3test.Bucket+"/via-url?endpoint="+endpoint+"&region=us-east-1&path_style=true")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(t.Context(), "k", strings.NewReader("v"), 1); err != nil {
		t.Fatalf("Put with credentials from the environment: %v", err)
	}
	if _, err := st.Stat(t.Context(), "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stat(t.Context(), "missing"); !errors.Is(err, storage.ErrNotExist) {
		t.Fatalf("Stat missing: %v", err)
	}
	// The prefix from the URL path is applied.
	s3st, ok := st.(*s3.Store)
	if !ok {
		t.Fatalf("Open returned %T, want *s3.Store", st)
	}
	if got := s3st.ObjectName("k"); got != "via-url/k" {
		t.Fatalf("object name = %q, want via-url/k", got)
	}
}
