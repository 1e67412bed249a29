//go:build tools

// Package tools pins the helm CLI used by chart tests and shipped in the image
// for the helm-template and kustomize-build steps.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
