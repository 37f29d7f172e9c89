package deploy_test

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/sluice-dev/sluice/transform"
)

var update = flag.Bool("update", false, "rewrite k8s/pipeline/configmap-policies.yaml from ../policies")

// kustomization is the part of kustomize's Kustomization these manifests
// use; decoding it strictly rejects any other (or misspelt) field.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources,omitempty"`
	Patches    []struct {
		Path string `json:"path"`
	} `json:"patches,omitempty"`
	Labels []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors,omitempty"`
	} `json:"labels,omitempty"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images,omitempty"`
}

// KEDA's CRDs are not in k8s.io/api; these are the fields of
// keda.sh/v1alpha1 the manifests use, decoded strictly like the rest.
type scaledObject struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion,omitempty"`
			Kind       string `json:"kind,omitempty"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount *int32 `json:"maxReplicaCount,omitempty"`
		PollingInterval *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod  *int32 `json:"cooldownPeriod,omitempty"`
		Triggers        []struct {
			Type              string            `json:"type"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
				Kind string `json:"kind,omitempty"`
			} `json:"authenticationRef,omitempty"`
		} `json:"triggers"`
	} `json:"spec"`
}

type triggerAuthentication struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		SecretTargetRef []struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		} `json:"secretTargetRef"`
	} `json:"spec"`
}

type objectMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// kinds maps each kind the manifests may hold to its apiVersion and a
// constructor of the typed object to decode it into.
var kinds = map[string]struct {
	apiVersion string
	new        func() any
}{
	"Namespace":             {"v1", func() any { return &corev1.Namespace{} }},
	"ServiceAccount":        {"v1", func() any { return &corev1.ServiceAccount{} }},
	"ConfigMap":             {"v1", func() any { return &corev1.ConfigMap{} }},
	"Secret":                {"v1", func() any { return &corev1.Secret{} }},
	"Service":               {"v1", func() any { return &corev1.Service{} }},
	"Deployment":            {"apps/v1", func() any { return &appsv1.Deployment{} }},
	"PodDisruptionBudget":   {"policy/v1", func() any { return &policyv1.PodDisruptionBudget{} }},
	"NetworkPolicy":         {"networking.k8s.io/v1", func() any { return &networkingv1.NetworkPolicy{} }},
	"ScaledObject":          {"keda.sh/v1alpha1", func() any { return &scaledObject{} }},
	"TriggerAuthentication": {"keda.sh/v1alpha1", func() any { return &triggerAuthentication{} }},
}

// object is one decoded manifest document.
type object struct {
	file, kind, name string
	v                any
}

// decodeFile strictly decodes every document of a manifest file.
func decodeFile(t *testing.T, path string) []object {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []object
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		if strings.TrimSpace(regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(doc, "")) == "" {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Errorf("%s doc %d: %v", path, i, err)
			continue
		}
		k, ok := kinds[head.Kind]
		if !ok {
			t.Errorf("%s doc %d: unexpected kind %q", path, i, head.Kind)
			continue
		}
		if head.APIVersion != k.apiVersion {
			t.Errorf("%s: %s has apiVersion %q, want %q", path, head.Kind, head.APIVersion, k.apiVersion)
		}
		v := k.new()
		if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
			t.Errorf("%s: %s %s: %v", path, head.Kind, head.Metadata.Name, err)
			continue
		}
		if head.Metadata.Name == "" {
			t.Errorf("%s: %s without a name", path, head.Kind)
		}
		out = append(out, object{file: path, kind: head.Kind, name: head.Metadata.Name, v: v})
	}
	return out
}

// build is what one kustomization directory brings together: its
// resources (recursively) and its patches (with those of its bases).
type build struct {
	objects, patches []object
	images           []string
}

func readKustomization(t *testing.T, dir string) kustomization {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(data, &k); err != nil {
		t.Fatalf("%s/kustomization.yaml: %v", dir, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("%s: apiVersion %q kind %q", dir, k.APIVersion, k.Kind)
	}
	return k
}

// load reads dir's kustomization, checking that every file it names
// exists, and marks each file it uses in used.
func load(t *testing.T, dir string, used map[string]bool) build {
	t.Helper()
	k := readKustomization(t, dir)
	var b build
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		switch {
		case err != nil:
			t.Errorf("%s lists resource %s, which does not exist", dir, r)
		case st.IsDir():
			if _, err := os.Stat(filepath.Join(p, "kustomization.yaml")); err != nil {
				t.Errorf("%s lists %s, a folder without kustomization.yaml", dir, r)
				continue
			}
			sub := load(t, p, used)
			b.objects = append(b.objects, sub.objects...)
			b.patches = append(b.patches, sub.patches...)
			b.images = append(b.images, sub.images...)
		default:
			used[filepath.Clean(p)] = true
			b.objects = append(b.objects, decodeFile(t, p)...)
		}
	}
	for _, p := range k.Patches {
		path := filepath.Join(dir, p.Path)
		if _, err := os.Stat(path); err != nil {
			t.Errorf("%s lists patch %s, which does not exist", dir, p.Path)
			continue
		}
		used[filepath.Clean(path)] = true
		b.patches = append(b.patches, decodeFile(t, path)...)
	}
	for _, im := range k.Images {
		b.images = append(b.images, im.Name)
	}
	return b
}

func (b build) find(kind, name string) any {
	for _, o := range b.objects {
		if o.kind == kind && o.name == name {
			return o.v
		}
	}
	return nil
}

func all[T any](b build, kind string) []*T {
	var out []*T
	for _, o := range b.objects {
		if o.kind == kind {
			out = append(out, o.v.(*T))
		}
	}
	return out
}

// matches reports whether selector picks pods labelled labels.
func matches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

const k8sDir = "k8s"

var overlays = []string{"k8s/overlays/onprem", "k8s/overlays/cloud"}

// TestManifests decodes every manifest of every overlay strictly into the
// Kubernetes API types and checks that the pieces fit together: files the
// kustomizations name exist and every manifest is used; selectors,
// ports, volumes and secret keys resolve; patches hit a resource.
func TestManifests(t *testing.T) {
	used := map[string]bool{}
	builds := map[string]build{}
	for _, o := range overlays {
		builds[o] = load(t, o, used)
	}
	// Every YAML file under k8s/ is a kustomization or used by one.
	_ = filepath.WalkDir(k8sDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".yaml") && d.Name() != "kustomization.yaml" && !used[filepath.Clean(p)] {
			t.Errorf("%s is in no kustomization: dead or forgotten", p)
		}
		return nil
	})

	for name, b := range builds {
		t.Run(filepath.Base(name), func(t *testing.T) {
			checkBuild(t, b)
		})
	}
}

func checkBuild(t *testing.T, b build) {
	deps := all[appsv1.Deployment](b, "Deployment")
	if len(deps) == 0 {
		t.Fatal("no Deployment")
	}
	for _, p := range b.patches {
		if b.find(p.kind, p.name) == nil {
			t.Errorf("patch %s targets %s %s, which the overlay does not have", p.file, p.kind, p.name)
		}
	}
	podLabels := func(sel map[string]string) *appsv1.Deployment {
		for _, d := range deps {
			if matches(sel, d.Spec.Template.Labels) {
				return d
			}
		}
		return nil
	}
	for _, d := range deps {
		checkDeployment(t, b, d)
	}
	for _, s := range all[corev1.Service](b, "Service") {
		d := podLabels(s.Spec.Selector)
		if len(s.Spec.Selector) == 0 || d == nil {
			t.Errorf("Service %s selects no Deployment's pods", s.Name)
			continue
		}
		for _, p := range s.Spec.Ports {
			if p.TargetPort.StrVal != "" && !hasPort(d, p.TargetPort.StrVal) {
				t.Errorf("Service %s targets port %q, which %s does not name", s.Name, p.TargetPort.StrVal, d.Name)
			}
		}
	}
	for _, p := range all[policyv1.PodDisruptionBudget](b, "PodDisruptionBudget") {
		if p.Spec.Selector == nil || podLabels(p.Spec.Selector.MatchLabels) == nil {
			t.Errorf("PodDisruptionBudget %s covers no Deployment", p.Name)
		}
	}
	for _, n := range all[networkingv1.NetworkPolicy](b, "NetworkPolicy") {
		if len(n.Spec.PodSelector.MatchLabels) > 0 && podLabels(n.Spec.PodSelector.MatchLabels) == nil {
			t.Errorf("NetworkPolicy %s selects no pods", n.Name)
		}
		if len(n.Spec.PolicyTypes) != 2 {
			t.Errorf("NetworkPolicy %s must govern both ingress and egress", n.Name)
		}
	}
	for _, s := range all[corev1.Secret](b, "Secret") {
		for k, v := range s.StringData {
			if regexp.MustCompile(`(?i)password|key|token|crt|secret`).MatchString(k) && !strings.HasPrefix(v, "REPLACE_ME") {
				t.Errorf("Secret %s key %s holds %q: secrets in git are placeholders (REPLACE_ME…)", s.Name, k, v)
			}
		}
		if len(s.Data) > 0 {
			t.Errorf("Secret %s has base64 data: keep only REPLACE_ME placeholders in stringData", s.Name)
		}
	}
	for _, im := range b.images {
		for _, d := range deps {
			for _, c := range d.Spec.Template.Spec.Containers {
				if !strings.HasPrefix(c.Image, im+":") {
					t.Errorf("%s/%s uses image %s; the kustomization pins %s", d.Name, c.Name, c.Image, im)
				}
			}
		}
	}
	checkExecutors(t, b)
	checkPipeline(t, b)
}

func hasPort(d *appsv1.Deployment, name string) bool {
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}

func checkDeployment(t *testing.T, b build, d *appsv1.Deployment) {
	if d.Spec.Selector == nil || !matches(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("Deployment %s: selector does not match its pod labels", d.Name)
	}
	ps := d.Spec.Template.Spec
	if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot {
		t.Errorf("Deployment %s may run as root", d.Name)
	}
	if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Errorf("Deployment %s mounts a service account token it does not need", d.Name)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range ps.Volumes {
		vols[v.Name] = v
		switch {
		case v.ConfigMap != nil:
			cm, _ := b.find("ConfigMap", v.ConfigMap.Name).(*corev1.ConfigMap)
			if cm == nil {
				t.Errorf("Deployment %s mounts ConfigMap %s, which the overlay does not have", d.Name, v.ConfigMap.Name)
			}
		case v.Secret != nil:
			s, _ := b.find("Secret", v.Secret.SecretName).(*corev1.Secret)
			if s == nil {
				t.Errorf("Deployment %s mounts Secret %s, which the overlay does not have", d.Name, v.Secret.SecretName)
				continue
			}
			for _, it := range v.Secret.Items {
				if _, ok := s.StringData[it.Key]; !ok {
					t.Errorf("Deployment %s mounts key %s of Secret %s, which has no such key", d.Name, it.Key, s.Name)
				}
			}
		}
	}
	for _, c := range ps.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil ||
			!slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("%s/%s: want no privilege escalation, a read-only root and all capabilities dropped", d.Name, c.Name)
		}
		for _, m := range c.VolumeMounts {
			if _, ok := vols[m.Name]; !ok {
				t.Errorf("%s/%s mounts volume %s, which the pod does not have", d.Name, c.Name, m.Name)
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				continue
			}
			ref := e.ValueFrom.SecretKeyRef
			s, _ := b.find("Secret", ref.Name).(*corev1.Secret)
			if s == nil {
				t.Errorf("%s/%s: env %s reads Secret %s, which the overlay does not have", d.Name, c.Name, e.Name, ref.Name)
			} else if _, ok := s.StringData[ref.Key]; !ok {
				t.Errorf("%s/%s: env %s reads key %s of Secret %s, which has no such key", d.Name, c.Name, e.Name, ref.Key, ref.Name)
			}
		}
		for what, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
			if p == nil {
				t.Errorf("%s/%s has no %s probe", d.Name, c.Name, what)
				continue
			}
			var port string
			switch {
			case p.HTTPGet != nil:
				port = p.HTTPGet.Port.StrVal
			case p.TCPSocket != nil:
				port = p.TCPSocket.Port.StrVal
			}
			if port == "" || !hasPort(d, port) {
				t.Errorf("%s/%s: %s probe on port %q, which the container does not name", d.Name, c.Name, what, port)
			}
		}
	}
}

// flags returns a container's --name=value arguments (repeatable ones
// joined with ",").
func flags(args []string) map[string]string {
	out := map[string]string{}
	for _, a := range args {
		if k, v, ok := strings.Cut(strings.TrimLeft(a, "-"), "="); ok && strings.HasPrefix(a, "-") {
			if out[k] != "" {
				v = out[k] + "," + v
			}
			out[k] = v
		}
	}
	return out
}

// specOf parses the pipeline spec in the sluice-spec ConfigMap of the
// overlay where it has one; nil where it has none.
func specOf(t *testing.T, b build) *transform.Spec {
	cm, _ := b.find("ConfigMap", "sluice-spec").(*corev1.ConfigMap)
	if cm == nil {
		return nil
	}
	spec, err := transform.Parse("k8s/pipeline/configmap-spec.yaml", []byte(cm.Data["pipeline.yaml"]))
	if err != nil {
		t.Fatalf("the spec in ConfigMap sluice-spec is invalid:\n%v", err)
	}
	return spec
}

// checkExecutors checks that an overlay's executor patch places it on its
// site's GPU nodes and names an executor of the pipeline spec with the
// same location.
func checkExecutors(t *testing.T, b build) {
	base, _ := b.find("Deployment", "sluice-executor").(*appsv1.Deployment)
	if base == nil {
		t.Fatal("no sluice-executor Deployment")
	}
	c := base.Spec.Template.Spec.Containers[0]
	gpu := corev1.ResourceName("nvidia.com/gpu")
	if q, ok := c.Resources.Limits[gpu]; !ok || q.Value() < 1 {
		t.Errorf("the executor does not request a GPU (limits nvidia.com/gpu)")
	}
	var patch *appsv1.Deployment
	for _, p := range b.patches {
		if p.kind == "Deployment" && p.name == "sluice-executor" {
			patch = p.v.(*appsv1.Deployment)
		}
	}
	if patch == nil {
		t.Fatal("the overlay does not place its executor (no sluice-executor patch)")
	}
	ps := patch.Spec.Template.Spec
	if len(ps.NodeSelector) < 2 {
		t.Errorf("the executor patch selects nodes by %v: want the site and GPU labels", ps.NodeSelector)
	}
	f := flags(ps.Containers[0].Args)
	spec := loadSpec(t)
	var ex *transform.Executor
	for i := range spec.Executors {
		if spec.Executors[i].ID == f["id"] {
			ex = &spec.Executors[i]
		}
	}
	if ex == nil {
		t.Fatalf("the executor patch serves --id=%s, which the pipeline spec does not list", f["id"])
	}
	l := ex.Location
	want := map[string]string{"location-name": l.Name, "location-kind": l.Kind, "jurisdiction": l.Jurisdiction,
		"region": l.Region, "site": l.Site, "provider": l.Provider, "cert": strings.Join(l.Certifications, ",")}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("executor %s: --%s=%q, the spec says %q", ex.ID, k, f[k], v)
		}
	}
	if !strings.HasSuffix(ex.Endpoint, ":8815") || f["listen"] != "0.0.0.0:8815" {
		t.Errorf("executor %s listens on %s; the spec reaches it at %s", ex.ID, f["listen"], ex.Endpoint)
	}
}

// loadSpec reads the pipeline spec from its ConfigMap file.
func loadSpec(t *testing.T) *transform.Spec {
	t.Helper()
	objs := decodeFile(t, "k8s/pipeline/configmap-spec.yaml")
	if len(objs) != 1 {
		t.Fatal("k8s/pipeline/configmap-spec.yaml: want one ConfigMap")
	}
	return specOf(t, build{objects: objs})
}

// checkPipeline checks the pipeline against its spec and KEDA's view of
// it, where the overlay runs one.
func checkPipeline(t *testing.T, b build) {
	d, _ := b.find("Deployment", "sluice-pipeline").(*appsv1.Deployment)
	if d == nil {
		return
	}
	spec := specOf(t, b)
	if spec == nil {
		t.Fatal("the pipeline has no sluice-spec ConfigMap")
	}
	c := d.Spec.Template.Spec.Containers[0]
	f := flags(c.Args)
	if c.Args[0] != "run" || f["f"] != "/etc/sluice/spec/pipeline.yaml" {
		t.Errorf("pipeline args %v: want run -f /etc/sluice/spec/pipeline.yaml", c.Args)
	}
	if spec.Lineage.SigningKey != f["signing-key"] || !strings.HasPrefix(f["signing-key"], "/etc/sluice/keys/") {
		t.Errorf("signing key: spec %q, args %q; want the mounted sluice-keys secret", spec.Lineage.SigningKey, f["signing-key"])
	}
	var sos []*scaledObject
	for _, o := range b.objects {
		if so, ok := o.v.(*scaledObject); ok {
			sos = append(sos, so)
		}
	}
	if len(sos) != 1 {
		t.Fatalf("%d ScaledObjects, want 1", len(sos))
	}
	so := sos[0]
	if so.Spec.ScaleTargetRef.Name != d.Name {
		t.Errorf("ScaledObject scales %q, not the pipeline %s", so.Spec.ScaleTargetRef.Name, d.Name)
	}
	if so.Spec.MaxReplicaCount == nil || so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount < 1 {
		t.Errorf("ScaledObject needs minReplicaCount >= 1 and a maxReplicaCount")
	}
	if len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "kafka" {
		t.Fatalf("ScaledObject triggers %+v: want one kafka trigger", so.Spec.Triggers)
	}
	tr := so.Spec.Triggers[0]
	group := spec.Source.Group
	if group == "" {
		group = "sluice-" + spec.Name
	}
	for k, v := range map[string]string{"topic": spec.Source.Topic, "consumerGroup": group,
		"bootstrapServers": strings.Join(spec.Source.Brokers, ",")} {
		if tr.Metadata[k] != v {
			t.Errorf("KEDA watches %s %q; the pipeline uses %q", k, tr.Metadata[k], v)
		}
	}
	if tr.AuthenticationRef == nil {
		t.Fatal("the kafka trigger has no authenticationRef")
	}
	auth, _ := b.find("TriggerAuthentication", tr.AuthenticationRef.Name).(*triggerAuthentication)
	if auth == nil {
		t.Fatalf("TriggerAuthentication %s is missing", tr.AuthenticationRef.Name)
	}
	for _, r := range auth.Spec.SecretTargetRef {
		s, _ := b.find("Secret", r.Name).(*corev1.Secret)
		if s == nil {
			t.Errorf("TriggerAuthentication reads Secret %s, which is missing", r.Name)
		} else if _, ok := s.StringData[r.Key]; !ok {
			t.Errorf("TriggerAuthentication reads key %s of Secret %s, which has no such key", r.Key, r.Name)
		}
	}
	if env := spec.Source.Security.SASL.PasswordEnv; env != "" && !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == env }) {
		t.Errorf("the spec reads the Kafka password from $%s, which the container does not set", env)
	}
}

// TestPolicyConfigMap checks that the policies ConfigMap holds exactly the
// shipped policies (go test ./deploy -run TestPolicyConfigMap -update
// rewrites it).
func TestPolicyConfigMap(t *testing.T) {
	const path = "k8s/pipeline/configmap-policies.yaml"
	want := policyConfigMap(t)
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from ../policies: run go test ./deploy -run TestPolicyConfigMap -update", path)
	}
	if objs := decodeFile(t, path); len(objs) != 1 || objs[0].kind != "ConfigMap" {
		t.Fatalf("%s: want one ConfigMap", path)
	}
}

func policyConfigMap(t *testing.T) []byte {
	t.Helper()
	files, err := filepath.Glob("../policies/*")
	if err != nil {
		t.Fatal(err)
	}
	data := map[string]string{}
	for _, f := range files {
		name := filepath.Base(f)
		if !(strings.HasSuffix(name, ".rego") && !strings.HasSuffix(name, "_test.rego")) && name != "data.json" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		data[name] = string(b)
	}
	if len(data) < 2 {
		t.Fatalf("found %d policy files in ../policies", len(data))
	}
	cm := corev1.ConfigMap{Data: data}
	cm.APIVersion, cm.Kind, cm.Name = "v1", "ConfigMap", "sluice-policies"
	out, err := yaml.Marshal(cm)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.WriteString("# Generated from policies/ (the Rego modules and data.json, tests left out)\n")
	buf.WriteString("# by: go test ./deploy -run TestPolicyConfigMap -update\n")
	buf.WriteString("# Mounted at /etc/sluice/policies; `sluice run --policies` loads it.\n")
	fmt.Fprintf(&buf, "# Files: %s\n", strings.Join(slices.Sorted(maps.Keys(data)), ", "))
	buf.Write(out)
	return buf.Bytes()
}

// TestImageBuild builds the binary with deploy/build.sh, the script the
// Dockerfile's build stage runs, and checks that it would run in the
// image's base: glibc is its only shared-library dependency (the CUDA
// driver and NVML are dlopened from the host, never linked), and that the
// Dockerfile builds with that script, runs as non-root and starts sluice.
func TestImageBuild(t *testing.T) {
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	dockerfile := string(df)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^FROM golang:\$\{GO_VERSION\}-(\w+) AS build$`),
		regexp.MustCompile(`(?m)^\s+deploy/build\.sh /out/sluice`),
		regexp.MustCompile(`(?m)^FROM gcr\.io/distroless/cc-debian\d+:nonroot$`),
		regexp.MustCompile(`(?m)^USER 65532:65532$`),
		regexp.MustCompile(`(?m)^ENTRYPOINT \["/usr/local/bin/sluice"\]$`),
	} {
		if !want.MatchString(dockerfile) {
			t.Errorf("Dockerfile lacks %s", want)
		}
	}
	if strings.Count(dockerfile, "go build") > 0 {
		t.Errorf("Dockerfile runs go build itself; keep the flags in deploy/build.sh")
	}
	if testing.Short() {
		t.Skip("builds the whole binary; -short skips it")
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("no C compiler: the image build uses cgo (go-nvml)")
	}
	bin := filepath.Join(t.TempDir(), "sluice")
	cmd := exec.Command("./build.sh", bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deploy/build.sh: %v\n%s", err, out)
	}
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "1" || settings["-trimpath"] != "true" || bi.Path != "github.com/sluice-dev/sluice/cmd/sluice" {
		t.Errorf("build settings %v of %s: want cgo on, -trimpath", settings, bi.Path)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	glibc := regexp.MustCompile(`^(libc|libm|libdl|libpthread|libresolv|librt|ld-linux-[\w-]+)\.so\.\d+$`)
	for _, l := range libs {
		if !glibc.MatchString(l) {
			t.Errorf("the binary links %s: distroless/cc has glibc only (driver libraries must be dlopened)", l)
		}
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "sluice ") {
		t.Errorf("built binary: sluice version: %v %s", err, out)
	}
}
