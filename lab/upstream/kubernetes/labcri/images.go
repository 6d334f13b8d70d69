package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Images are not downloaded: images.json maps an image repository to a host program, or to a list of host
// programs of different versions (the lab carries a previous release set for its upgrade test), or to "" for an
// image that only names a sandbox, like pause. A reference REPO:TAG is usable only when REPO is in the map and,
// for a program image, one of its programs' --version output has TAG as one of its words ("Kubernetes
// v1.36.3"); that program is the image. A kubelet or kubeadm asking for a version no program has is refused
// instead of silently given the wrong binary. An image is present once pulled (as with any runtime) and while
// it stays usable.

type imageStore struct {
	file     string
	programs map[string][]string // repository -> program paths, in the file's order (none = sandbox-only image)

	mu     sync.Mutex
	pulled map[string]bool        // references pulled and not removed
	probes map[string]programInfo // program path -> last --version probe
}

// programInfo caches the expensive facts about a program (its --version output and digest) for one
// (path, mtime, size): the check must follow a replaced binary but not rerun on every kubelet poll.
type programInfo struct {
	mtime   time.Time
	size    int64
	output  string
	digest  string
	failure error
}

// resolvedImage is a usable reference.
type resolvedImage struct {
	ref     string // REPO:TAG
	repo    string
	tag     string
	program string // "" for a sandbox-only image
	id      string
	size    uint64
}

func loadImageStore(file string) (*imageStore, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("images file: %w", err)
	}
	var entries map[string]json.RawMessage
	if err := json.Unmarshal(data, &entries); err != nil {
		return nil, fmt.Errorf("images file %s: %w", file, err)
	}
	programs := map[string][]string{}
	for repo, raw := range entries {
		list, err := parsePrograms(raw)
		if err != nil {
			return nil, fmt.Errorf("images file %s: %s: %w", file, repo, err)
		}
		programs[repo] = list
	}
	return &imageStore{file: file, programs: programs, pulled: map[string]bool{}, probes: map[string]programInfo{}}, nil
}

// parsePrograms reads one repository's entry: "" (sandbox-only), "/path", or ["/path", ...].
func parsePrograms(raw json.RawMessage) ([]string, error) {
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == "" {
			return nil, nil
		}
		raw, _ = json.Marshal([]string{one})
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("want a program path, a list of them, or \"\" for a sandbox-only image: %v", err)
	}
	// An empty list would silently turn a program image into a sandbox-only one.
	if len(list) == 0 {
		return nil, fmt.Errorf("empty list of programs (write \"\" for a sandbox-only image)")
	}
	for _, prog := range list {
		if !strings.HasPrefix(prog, "/") {
			return nil, fmt.Errorf("program must be an absolute path, not %q", prog)
		}
	}
	return list, nil
}

func (st *imageStore) setPulled(refs []string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, r := range refs {
		st.pulled[r] = true
	}
}

func (st *imageStore) pulledRefs() []string {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]string, 0, len(st.pulled))
	for r := range st.pulled {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// splitRef splits REPO[:TAG] (tag defaults to latest, as everywhere). Digest references cannot be verified
// against a host program, so they are refused.
func splitRef(ref string) (repo, tag string, err error) {
	if ref == "" {
		return "", "", status.Error(codes.InvalidArgument, "empty image reference")
	}
	if strings.Contains(ref, "@") {
		return "", "", status.Errorf(codes.InvalidArgument, "image %q: kubeha-lab-cri cannot verify digest references, use REPO:TAG", ref)
	}
	repo, tag = ref, "latest"
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		repo, tag = ref[:i], ref[i+1:]
	}
	return repo, tag, nil
}

// resolve checks that ref is usable (not whether it was pulled) and picks the program of its version. The
// error is a gRPC status.
func (st *imageStore) resolve(ref string) (*resolvedImage, error) {
	repo, tag, err := splitRef(ref)
	if err != nil {
		return nil, err
	}
	programs, ok := st.programs[repo]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "image %q: repository %s is not in the kubeha-lab-cri images file %s", ref, repo, st.file)
	}
	img := &resolvedImage{ref: repo + ":" + tag, repo: repo, tag: tag}
	digest := ""
	if len(programs) > 0 {
		// Every program tried, with what it said, so a refusal shows which versions this machine does have.
		var tried []string
		broken := false
		for _, program := range programs {
			info := st.probe(program)
			if info.failure != nil {
				broken = true
				tried = append(tried, fmt.Sprintf("%s: %v", program, info.failure))
				continue
			}
			if hasWord(info.output, tag) {
				img.program, digest, img.size = program, info.digest, uint64(info.size)
				break
			}
			tried = append(tried, fmt.Sprintf("%s reports %q", program, strings.TrimSpace(info.output)))
		}
		if img.program == "" {
			// A program that cannot run may be the one of this version: that is a broken machine, not a
			// version it lacks.
			code := codes.NotFound
			if broken {
				code = codes.FailedPrecondition
			}
			return nil, status.Errorf(code, "image %q: no program of version %s (images file %s): %s", ref, tag, st.file, strings.Join(tried, "; "))
		}
	}
	sum := sha256.Sum256([]byte(img.ref + "\n" + digest))
	img.id = "sha256:" + hex.EncodeToString(sum[:])
	return img, nil
}

func hasWord(text, word string) bool {
	for _, f := range strings.Fields(text) {
		if f == word {
			return true
		}
	}
	return false
}

func (st *imageStore) probe(program string) programInfo {
	fi, err := os.Stat(program)
	if err != nil {
		return programInfo{failure: err}
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return programInfo{failure: fmt.Errorf("not an executable file")}
	}
	st.mu.Lock()
	cached, ok := st.probes[program]
	st.mu.Unlock()
	if ok && cached.mtime.Equal(fi.ModTime()) && cached.size == fi.Size() {
		return cached
	}
	info := programInfo{mtime: fi.ModTime(), size: fi.Size()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, program, "--version").CombinedOutput()
	if err != nil {
		info.failure = fmt.Errorf("%s --version: %v: %s", program, err, strings.TrimSpace(string(out)))
	} else {
		info.output = string(out)
		info.digest, info.failure = fileDigest(program)
	}
	st.mu.Lock()
	st.probes[program] = info
	st.mu.Unlock()
	return info
}

func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// lookup finds a present image by reference or by image ID; nil when absent. A pulled reference that is no
// longer usable (program replaced by another version) is absent.
func (st *imageStore) lookup(refOrID string) *resolvedImage {
	refs := st.matchingPulled(refOrID)
	for _, ref := range refs {
		if img, err := st.resolve(ref); err == nil && (!strings.HasPrefix(refOrID, "sha256:") || img.id == refOrID) {
			return img
		}
	}
	return nil
}

// matchingPulled returns the pulled references named by refOrID: the reference itself (tag defaulted), or,
// for an image ID, every pulled reference currently resolving to that ID.
func (st *imageStore) matchingPulled(refOrID string) []string {
	var out []string
	if strings.HasPrefix(refOrID, "sha256:") {
		for _, ref := range st.pulledRefs() {
			if img, err := st.resolve(ref); err == nil && img.id == refOrID {
				out = append(out, ref)
			}
		}
		return out
	}
	repo, tag, err := splitRef(refOrID)
	if err == nil && st.pulledHas(repo+":"+tag) {
		out = append(out, repo+":"+tag)
	}
	return out
}

func (img *resolvedImage) toCRI() *runtimeapi.Image {
	return &runtimeapi.Image{
		Id:       img.id,
		RepoTags: []string{img.ref},
		Size:     img.size,
		Spec:     &runtimeapi.ImageSpec{Image: img.ref},
		// A sandbox-only image has nothing to collect and must never be garbage collected.
		Pinned: img.program == "",
	}
}

func (s *server) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	ref := req.GetImage().GetImage()
	img, err := s.images.resolve(ref)
	if err != nil {
		log.Printf("PullImage %s refused: %v", ref, err)
		return nil, err
	}
	s.mu.Lock()
	s.images.mu.Lock()
	s.images.pulled[img.ref] = true
	s.images.mu.Unlock()
	s.persist()
	s.mu.Unlock()
	log.Printf("PullImage %s -> %s (%s)", ref, img.id, programOrSandbox(img.program))
	return &runtimeapi.PullImageResponse{ImageRef: img.id}, nil
}

func programOrSandbox(p string) string {
	if p == "" {
		return "sandbox-only image"
	}
	return "program " + p
}

func (s *server) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	ref := req.GetImage().GetImage()
	if _, _, err := splitRef(ref); err != nil && !strings.HasPrefix(ref, "sha256:") {
		return nil, err
	}
	img := s.images.lookup(ref)
	if img == nil {
		// The CRI says: an absent image is a response without an image, not an error.
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	return &runtimeapi.ImageStatusResponse{Image: img.toCRI()}, nil
}

func (s *server) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	want := req.GetFilter().GetImage().GetImage()
	resp := &runtimeapi.ListImagesResponse{}
	for _, ref := range s.images.pulledRefs() {
		img, err := s.images.resolve(ref)
		if err != nil {
			continue
		}
		if want != "" && want != img.ref && want != img.id {
			continue
		}
		resp.Images = append(resp.Images, img.toCRI())
	}
	return resp, nil
}

func (s *server) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	ref := req.GetImage().GetImage()
	removed := s.images.matchingPulled(ref)
	// Removing an absent image is not an error (the CRI makes RemoveImage idempotent).
	if len(removed) == 0 {
		return &runtimeapi.RemoveImageResponse{}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.images.mu.Lock()
	for _, r := range removed {
		delete(s.images.pulled, r)
	}
	s.images.mu.Unlock()
	s.persist()
	log.Printf("RemoveImage %s: forgot %v (the host programs stay)", ref, removed)
	return &runtimeapi.RemoveImageResponse{}, nil
}

func (st *imageStore) pulledHas(ref string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.pulled[ref]
}

// ImageFsInfo reports the file system holding the state dir: the only storage this runtime writes (the
// programs themselves live on the host file system and are not the runtime's).
func (s *server) ImageFsInfo(ctx context.Context, req *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(s.cfg.stateDir, &fs); err != nil {
		return nil, status.Errorf(codes.Internal, "statfs %s: %v", s.cfg.stateDir, err)
	}
	usage := &runtimeapi.FilesystemUsage{
		Timestamp:  time.Now().UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: s.cfg.stateDir},
		UsedBytes:  &runtimeapi.UInt64Value{Value: (fs.Blocks - fs.Bfree) * uint64(fs.Bsize)},
		InodesUsed: &runtimeapi.UInt64Value{Value: fs.Files - fs.Ffree},
	}
	return &runtimeapi.ImageFsInfoResponse{
		ImageFilesystems:     []*runtimeapi.FilesystemUsage{usage},
		ContainerFilesystems: []*runtimeapi.FilesystemUsage{usage},
	}, nil
}
