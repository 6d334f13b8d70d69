package main

import (
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// newHandler serves the regular files below root. Folders are not listed (upstream's download hosts list
// nothing either, and a listing would be a second layout for clients to depend on): a folder is a 404 like a
// missing file. Every request is logged as one line.
func newHandler(root string, logger *log.Logger) http.Handler {
	files := http.FileServer(http.Dir(root))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started := time.Now()
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		switch {
		case r.Method != http.MethodGet && r.Method != http.MethodHead:
			rec.Header().Set("Allow", "GET, HEAD")
			http.Error(rec, "method not allowed", http.StatusMethodNotAllowed)
		case !isRegularFile(root, r.URL.Path):
			http.NotFound(rec, r)
		default:
			files.ServeHTTP(rec, r)
		}
		logger.Printf("%s %s %d %d %s", r.Method, r.URL.Path, rec.status, rec.bytes, time.Since(started).Round(time.Microsecond))
	})
}

// isRegularFile says whether the URL path names a regular file below root. The path is cleaned as
// http.Dir cleans it, so ".." cannot climb out of root.
func isRegularFile(root, urlPath string) bool {
	if !strings.HasPrefix(urlPath, "/") {
		urlPath = "/" + urlPath
	}
	name := filepath.Join(root, filepath.FromSlash(filepath.Clean(urlPath)))
	info, err := os.Stat(name)
	return err == nil && info.Mode().IsRegular()
}

// recorder keeps what the log line reports: the status code and the body bytes written.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}
