package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A temp folder in the mirror's layout, served by the real listener and handler on a free loopback port.
func startMirror(t *testing.T) (base string, logs *bytes.Buffer) {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "release/v1.36.3/bin/linux/amd64")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kubeadm.sha256"), []byte("abc123\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	listener, err := listenLoopback("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs = &bytes.Buffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, listener, newHandler(root, log.New(logs, "", 0))) }()
	t.Cleanup(func() {
		// What SIGTERM does in main: serve must return nil, not an error.
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve after cancel: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop within 10 s of its cancel")
		}
	})
	return "http://" + listener.Addr().String(), logs
}

func request(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestServesFilesAndNothingElse(t *testing.T) {
	base, logs := startMirror(t)
	path := "/release/v1.36.3/bin/linux/amd64/kubeadm.sha256"
	if status, body := request(t, "GET", base+path); status != 200 || body != "abc123\n" {
		t.Fatalf("GET %s = %d %q", path, status, body)
	}
	if status, body := request(t, "HEAD", base+path); status != 200 || body != "" {
		t.Fatalf("HEAD %s = %d %q", path, status, body)
	}
	for _, missing := range []string{"/release/v1.36.3/bin/linux/amd64/kubelet", "/release/", "/", "/../../etc/passwd"} {
		if status, _ := request(t, "GET", base+missing); status != 404 {
			t.Errorf("GET %s = %d, want 404", missing, status)
		}
	}
	if status, _ := request(t, "POST", base+path); status != 405 {
		t.Errorf("POST %s = %d, want 405", path, status)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 7 || !strings.HasPrefix(lines[0], "GET "+path+" 200 7 ") {
		t.Errorf("want one log line per request, the first for the GET; got %q", lines)
	}
}

func TestRefusesToListenBeyondLoopback(t *testing.T) {
	for _, addr := range []string{":0", "0.0.0.0:0", "198.18.0.1:0", "[::]:0", "127.0.0.1"} {
		if l, err := listenLoopback(addr); err == nil {
			l.Close()
			t.Errorf("listenLoopback(%q) listened; want a refusal", addr)
		}
	}
	l, err := listenLoopback("localhost:0")
	if err != nil {
		t.Fatalf("localhost is loopback: %v", err)
	}
	l.Close()
}
