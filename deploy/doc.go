// Package deploy holds what operators deploy: the container image
// (Dockerfile, built with build.sh), the Kubernetes manifests (k8s/: a
// kustomize base, the pipeline, and the onprem and cloud overlays) and the
// example pipeline specs (examples/). Its tests build the binary the way
// the image does and decode every manifest strictly into the Kubernetes
// API types, so a typo fails CI rather than a rollout.
package deploy
