//go:build tools

// The previous release set (see ../../build.sh): the same upstream main packages as ../../kubernetes, one
// minor version older, for the lab's upgrade test. Only the programs: the lab's own CRI runtime and mirror
// are built once, from the current set.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
