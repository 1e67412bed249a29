//go:build tools

// Package tools pins the kustomize CLI that the kustomize-build step runs.
package tools

import _ "sigs.k8s.io/kustomize/kustomize/v5"
