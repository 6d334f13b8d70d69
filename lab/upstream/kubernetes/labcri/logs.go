package main

import (
	"bufio"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// The kubelet reads container logs in the CRI log format, one record per line:
//
//	2026-01-02T15:04:05.999999999Z stdout F the line
//
// F marks a full line, P a partial one (a line longer than maxLogLine is cut into P records and a final F).
// Records are written whole under a mutex, so stdout and stderr lines never interleave inside a record, and
// ReopenContainerLog (after the kubelet rotated the file) swaps the file between two records.

const maxLogLine = 16 * 1024

type criLog struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

func openCRILog(path string) (*criLog, error) {
	l := &criLog{path: path}
	if err := l.reopen(); err != nil {
		return nil, err
	}
	return l, nil
}

func (l *criLog) reopen() error {
	if err := os.MkdirAll(filepath.Dir(l.path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

func (l *criLog) write(stream string, full bool, content []byte) {
	tag := byte('P')
	if full {
		tag = 'F'
	}
	rec := make([]byte, 0, len(content)+64)
	rec = time.Now().UTC().AppendFormat(rec, time.RFC3339Nano)
	rec = append(rec, ' ')
	rec = append(rec, stream...)
	rec = append(rec, ' ', tag, ' ')
	rec = append(rec, content...)
	rec = append(rec, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		_, _ = l.f.Write(rec) // a full disk must not stop the program; the kubelet notices the missing lines
	}
}

func (l *criLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// copyToCRILog turns a stream into records until EOF. The newline ends a record and is not part of it; the
// last bytes of a stream without a final newline are still a full record (the stream ended).
func copyToCRILog(r io.Reader, stream string, l *criLog) {
	br := bufio.NewReaderSize(r, maxLogLine)
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			l.write(stream, true, chunk[:len(chunk)-1])
		case errors.Is(err, bufio.ErrBufferFull):
			l.write(stream, false, chunk)
		default:
			if len(chunk) > 0 {
				l.write(stream, true, chunk)
			}
			return
		}
	}
}
