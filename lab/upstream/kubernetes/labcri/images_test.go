package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeProgram writes a program that answers --version with `version` and otherwise says who it is.
func fakeProgram(t *testing.T, path, version string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(path), 0o755))
	must(t, os.WriteFile(path, []byte("#!/bin/sh\nif [ \"$1\" = --version ]; then echo '"+version+"'; exit 0; fi\necho \""+path+" $*\"\n"), 0o755))
}

func writeImages(t *testing.T, file, content string) {
	t.Helper()
	must(t, os.WriteFile(file, []byte(content), 0o644))
}

// The lab's upgrade test runs two release sets on one machine: each tag is served by the program of its version.
func TestImagesOfTwoVersionsResolveToTheirOwnPrograms(t *testing.T) {
	e := newLabEnv(t)
	previous := filepath.Join(e.dir, "previous", "kube-apiserver")
	fakeProgram(t, previous, "Kubernetes v1.35.4")
	// The list form beside the plain string form (kube-scheduler) and a sandbox-only image.
	scheduler := filepath.Join(e.dir, "bin", "kube-scheduler")
	fakeProgram(t, scheduler, "Kubernetes v1.36.3")
	writeImages(t, e.cfg.imagesFile, `{"registry.k8s.io/kube-apiserver": ["`+e.program+`", "`+previous+`"],
		"registry.k8s.io/kube-scheduler": "`+scheduler+`", "registry.k8s.io/pause": ""}`)
	c, _ := e.start(t)

	current, err := c.srv.images.resolve(apiserverImage)
	must(t, err)
	old, err := c.srv.images.resolve("registry.k8s.io/kube-apiserver:v1.35.4")
	must(t, err)
	if current.program != e.program || old.program != previous {
		t.Fatalf("v1.36.3 -> %s, v1.35.4 -> %s", current.program, old.program)
	}
	if current.id == old.id {
		t.Fatalf("two versions share the image id %s", current.id)
	}
	if img, err := c.srv.images.resolve("registry.k8s.io/kube-scheduler:v1.36.3"); err != nil || img.program != scheduler {
		t.Fatalf("plain string entry: %v %v", img, err)
	}

	// Both pulled (kubeadm's preflight of either version, the kubelet's image GC) and both listed.
	c.pull(t, apiserverImage)
	c.pull(t, "registry.k8s.io/kube-apiserver:v1.35.4")
	list, err := c.img.ListImages(ctx(t), &runtimeapi.ListImagesRequest{})
	must(t, err)
	if len(list.Images) != 2 {
		t.Fatalf("ListImages: %v", list.Images)
	}
	st, err := c.img.ImageStatus(ctx(t), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: old.id}})
	must(t, err)
	if st.Image == nil || st.Image.RepoTags[0] != "registry.k8s.io/kube-apiserver:v1.35.4" {
		t.Fatalf("status of the previous version by id: %v", st.Image)
	}

	// A version no program has is refused, naming the tag and every program tried with what it reports.
	_, err = c.img.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "registry.k8s.io/kube-apiserver:v1.34.0"}})
	msg := status.Convert(err).Message()
	if status.Code(err) != codes.NotFound || !strings.Contains(msg, "version v1.34.0") ||
		!strings.Contains(msg, e.program+` reports "Kubernetes v1.36.3"`) || !strings.Contains(msg, previous+` reports "Kubernetes v1.35.4"`) {
		t.Fatalf("version no program has: %v", err)
	}
}

// A missing program (an old build without previous/) does not hide the versions the others serve, and is named
// when it might have been the one asked for.
func TestImagesWithABrokenProgram(t *testing.T) {
	e := newLabEnv(t)
	missing := filepath.Join(e.dir, "previous", "kube-apiserver")
	writeImages(t, e.cfg.imagesFile, `{"registry.k8s.io/kube-apiserver": ["`+e.program+`", "`+missing+`"]}`)
	c, _ := e.start(t)
	c.pull(t, apiserverImage)
	_, err := c.img.PullImage(ctx(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "registry.k8s.io/kube-apiserver:v1.35.4"}})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing program: %v", err)
	}
}

func TestImagesFileShapes(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "images.json")
	for content, want := range map[string]string{
		`{"r": []}`:                     "empty list of programs",
		`{"r": ["bin/kube-apiserver"]}`: "absolute path",
		`{"r": "bin/kube-apiserver"}`:   "absolute path",
		`{"r": 3}`:                      "a list of them",
		`{"r": ["/a", ""]}`:             "absolute path",
	} {
		writeImages(t, file, content)
		if _, err := loadImageStore(file); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "r: ") {
			t.Errorf("%s: %v, want an error saying %q", content, err, want)
		}
	}
	writeImages(t, file, `{"a": "/a", "b": ["/b1", "/b2"], "p": ""}`)
	st, err := loadImageStore(file)
	must(t, err)
	if strings.Join(st.programs["a"], ",") != "/a" || strings.Join(st.programs["b"], ",") != "/b1,/b2" || st.programs["p"] != nil {
		t.Fatalf("programs: %v", st.programs)
	}
}
