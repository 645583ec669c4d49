package deploy_test

// The deployment material under deploy/ is checked against the binary it
// runs, so that a renamed flag, a removed variable or an edited rule file
// fails here rather than in a cluster: every --flag and DIREKTIV_AUTHZ_*
// variable it uses must be one the binary accepts, every YAML file must
// parse, the policies ConfigMap must equal policies/*.rego byte for byte,
// the probes must ask /healthz and /readyz on the ops port, and the sidecar
// must run as a non-root user.

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/direktiv/direktiv-authz/internal/config"
	"github.com/direktiv/direktiv-authz/store/redis"
)

const (
	// deployDir is deploy/, this directory, where go test runs.
	deployDir   = "."
	policiesDir = "../policies"
	// policiesConfigMap is the file gen-configmap.sh writes, relative to deploy/.
	policiesConfigMap = "kubernetes/configmap-policies.yaml"
	// k8sDefaultGrace is Kubernetes' terminationGracePeriodSeconds when a pod
	// spec (or a Helm chart's) does not set one.
	k8sDefaultGrace = 30 * time.Second
)

// wantSidecars are the files that must run the sidecar, so that the checks
// below cannot pass by finding nothing to check.
var wantSidecars = []string{
	"compose.yaml",
	"kubernetes/deployment.yaml",
	"kubernetes/direktiv-0.8/sidecar-values.yaml",
}

func TestDeploy(t *testing.T) {
	bin := mustBinarySettings(t)
	c := newDeployChecker(bin)
	files := 0
	err := filepath.WalkDir(deployDir, func(p string, d os.DirEntry, err error) error {
		// The chart links policies/ in (files/policies); the policies are
		// checked against the ConfigMaps, not read here. The tests beside
		// the manifests are not deployment material.
		if err != nil || d.IsDir() || d.Type()&os.ModeSymlink != 0 || strings.HasSuffix(p, "_test.go") {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(deployDir, p)
		if err != nil {
			return err
		}
		c.checkFile(filepath.ToSlash(rel), data)
		files++
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", deployDir, err)
	}
	if files == 0 {
		t.Fatalf("no files under %s", deployDir)
	}
	c.finish()
	for _, f := range wantSidecars {
		if c.sidecars[f] == 0 {
			t.Errorf("deploy/%s: no direktiv-authz container found (image naming direktiv-authz, or a compose build of deploy/Dockerfile)", f)
		}
	}
	if !c.sawDockerfile {
		t.Errorf("deploy/Dockerfile: missing")
	}
	for _, p := range c.problems {
		t.Error(p)
	}

	t.Run("policies ConfigMap is policies/*.rego", func(t *testing.T) {
		cm, err := os.ReadFile(filepath.Join(deployDir, policiesConfigMap))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range checkPolicyConfigMap(cm, mustPolicyFiles(t)) {
			t.Error(p)
		}
	})

	t.Run("gen-configmap.sh writes the committed ConfigMap", func(t *testing.T) {
		sh, err := exec.LookPath("sh")
		if err != nil {
			t.Skip("no sh on PATH")
		}
		want, err := os.ReadFile(filepath.Join(deployDir, policiesConfigMap))
		if err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(sh, filepath.Join(deployDir, "kubernetes", "gen-configmap.sh"), policiesDir)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("gen-configmap.sh: %v\n%s", err, stderr.String())
		}
		if !bytes.Equal(stdout.Bytes(), want) {
			t.Errorf("deploy/%s is not what gen-configmap.sh writes from policies/; regenerate it:\n\tdeploy/kubernetes/gen-configmap.sh > deploy/%s", policiesConfigMap, policiesConfigMap)
		}
	})
}

// TestDeployCheckerCatches feeds the checker broken snippets and asserts
// that it reports each fault, so that TestDeploy can fail.
func TestDeployCheckerCatches(t *testing.T) {
	bin := mustBinarySettings(t)
	good := mustReadFile(t, filepath.Join(deployDir, "kubernetes", "deployment.yaml"))
	replace := func(old, new string) string {
		t.Helper()
		if !strings.Contains(good, old) {
			t.Fatalf("deployment.yaml no longer contains %q; update this test", old)
		}
		return strings.Replace(good, old, new, 1)
	}
	tests := []struct {
		name, file, content string
		want                []string // substrings of the problems
	}{
		{
			name: "made-up flag and variable",
			file: "kubernetes/deployment.yaml",
			content: replace("          args:\n", "          args:\n            - --made-up-flag=1\n") +
				"\n# DIREKTIV_AUTHZ_MADE_UP_VARIABLE\n",
			want: []string{"--made-up-flag", "DIREKTIV_AUTHZ_MADE_UP_VARIABLE"},
		},
		{
			name: "flags in a compact Helm values snippet",
			file: "kubernetes/extra-values.yaml",
			content: `
api:
  extraContainers:
    - name: authz
      image: example.com/direktiv-authz:1
      command: ["/direktiv-authz", "-listen", ":8090", "--no-such-flag", "stray"]
      env:
        - {name: DIREKTIV_AUTHZ_NOPE, value: "1"}
`,
			want: []string{"--no-such-flag", `unexpected argument "stray"`, "DIREKTIV_AUTHZ_NOPE", "livenessProbe", "readinessProbe", "runAsNonRoot"},
		},
		{
			name:    "liveness probe on the wrong path",
			file:    "kubernetes/deployment.yaml",
			content: replace("path: /healthz", "path: /health"),
			want:    []string{`livenessProbe asks "/health", want "/healthz"`},
		},
		{
			name:    "readiness probe on the API port",
			file:    "kubernetes/deployment.yaml",
			content: replace("              path: /readyz\n              port: ops", "              path: /readyz\n              port: http"),
			want:    []string{"readinessProbe asks port 8090, want the ops port"},
		},
		{
			name:    "runs as root",
			file:    "kubernetes/deployment.yaml",
			content: strings.ReplaceAll(replace("runAsUser: 65532", "runAsUser: 0"), "runAsNonRoot: true", "runAsNonRoot: false"),
			want:    []string{"runAsNonRoot", "runAsUser 0"},
		},
		{
			name:    "writable root filesystem",
			file:    "kubernetes/deployment.yaml",
			content: replace("readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"),
			want:    []string{"readOnlyRootFilesystem"},
		},
		{
			name:    "grace period shorter than the shutdown grace",
			file:    "kubernetes/deployment.yaml",
			content: replace("terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 10"),
			want:    []string{"terminationGracePeriodSeconds"},
		},
		{
			name:    "policies mounted with subPath",
			file:    "kubernetes/deployment.yaml",
			content: replace("              mountPath: /etc/direktiv-authz/policies\n", "              mountPath: /etc/direktiv-authz/policies\n              subPath: routes.rego\n"),
			want:    []string{"subPath"},
		},
		{
			name:    "service links left on beside a direktiv-authz Service",
			file:    "kubernetes/deployment.yaml",
			content: replace("enableServiceLinks: false", "enableServiceLinks: true"),
			want:    []string{"enableServiceLinks"},
		},
		{
			name:    "not YAML",
			file:    "kubernetes/broken.yaml",
			content: "a: [1, 2\n",
			want:    []string{"does not parse"},
		},
		{
			name:    "Dockerfile as root with an unknown flag",
			file:    "Dockerfile",
			content: "FROM golang:1.26 AS build\nRUN go build ./...\nFROM scratch\nUSER root\nEXPOSE 1234\nENTRYPOINT [\"/direktiv-authz\", \"--bogus\"]\n",
			want:    []string{"USER root", "--bogus", "EXPOSE"},
		},
		{
			name:    "compose with an unknown variable",
			file:    "compose.yaml",
			content: "services:\n  authz:\n    build: {context: .., dockerfile: deploy/Dockerfile}\n    user: root\n    environment:\n      DIREKTIV_AUTHZ_LISTEN: \":8090\"\n      DIREKTIV_AUTHZ_TYPO: x\n",
			want:    []string{"DIREKTIV_AUTHZ_TYPO", "user root"},
		},
		{
			name:    "a Redis URL the sidecar refuses",
			file:    "README.md",
			content: "Use redis+sentinel://h1:26379,h2:26379 (no master name).\n",
			want:    []string{"no master name"},
		},
		{
			name:    "an unknown flag in the README",
			file:    "README.md",
			content: "Pass `--policy-dir` to ...\n",
			want:    []string{"--policy-dir"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newDeployChecker(bin)
			c.checkFile(tt.file, []byte(tt.content))
			c.finish()
			all := strings.Join(c.problems, "\n")
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("no problem mentions %q; problems:\n%s", w, all)
				}
			}
		})
	}

	t.Run("a changed byte in the policies ConfigMap", func(t *testing.T) {
		files := mustPolicyFiles(t)
		cm := mustReadFile(t, filepath.Join(deployDir, policiesConfigMap))
		names := slices.Sorted(maps.Keys(files))
		if len(names) == 0 {
			t.Fatal("no policies")
		}
		files[names[0]] += "\n" // the ConfigMap now lacks a byte
		delete(files, names[len(names)-1])
		all := strings.Join(checkPolicyConfigMap([]byte(cm), files), "\n")
		for _, w := range []string{names[0] + " differs", names[len(names)-1] + " is not in policies/"} {
			if !strings.Contains(all, w) {
				t.Errorf("no problem mentions %q; problems:\n%s", w, all)
			}
		}
	})
}

// binarySettings is what the binary accepts, read from the binary's own
// configuration code rather than repeated here.
type binarySettings struct {
	flags    map[string]bool   // every flag name config.Parse registers
	bools    map[string]bool   // boolean flags (they take no separate value)
	env      map[string]bool   // every DIREKTIV_AUTHZ_* variable it reads
	envOf    map[string]string // flag name -> its environment twin
	defaults map[string]string // flag name -> default value
}

// usageFlag matches a flag in the usage text flag.PrintDefaults writes:
// "  -name type" (or "  --name").
var usageFlag = regexp.MustCompile(`(?m)^  --?([A-Za-z0-9][A-Za-z0-9_.-]*)`)

func mustBinarySettings(tb testing.TB) binarySettings {
	tb.Helper()
	c := config.Default()
	b := binarySettings{
		flags:    map[string]bool{},
		bools:    map[string]bool{},
		env:      map[string]bool{config.EnvAdminToken: true, config.EnvUpstreamAPIKey: true},
		envOf:    map[string]string{},
		defaults: map[string]string{},
	}
	for _, s := range c.Settings() {
		b.flags[s.Flag] = true
		b.env[s.Env] = true
		b.envOf[s.Flag] = s.Env
		if s.Bool != nil {
			b.bools[s.Flag] = true
			b.defaults[s.Flag] = strconv.FormatBool(*s.Bool)
		} else {
			b.defaults[s.Flag] = *s.Str
		}
	}
	// Any flag config.Parse registers beyond Settings(): ask it for --help.
	var usage bytes.Buffer
	if _, err := config.Parse([]string{"--help"}, nil, &usage); !errors.Is(err, config.ErrHelp) {
		tb.Fatalf("config.Parse(--help) = %v, want config.ErrHelp", err)
	}
	listed := map[string]bool{}
	for _, m := range usageFlag.FindAllStringSubmatch(usage.String(), -1) {
		listed[m[1]] = true
		b.flags[m[1]] = true
	}
	for f := range b.envOf {
		if !listed[f] {
			tb.Fatalf("--help does not list -%s in the form deploy_test.go reads (%s); update usageFlag:\n%s", f, usageFlag, usage.String())
		}
	}
	return b
}

// deployedSidecar is one place in deploy/ that runs direktiv-authz.
type deployedSidecar struct {
	where   string            // file and container, for messages
	file    string            // relative to deploy/
	args    []string          // flags and values, the program name removed
	flags   map[string]string // flag -> value given on the command line
	env     map[string]string // variable -> literal value
	envRefs map[string]bool   // variables whose value comes from a Secret or elsewhere
	k8s     map[string]any    // the Kubernetes container, nil elsewhere
	pod     map[string]any    // its pod spec, nil for a Helm chart's pod
	doc     map[string]any    // the YAML document holding it
}

// setting returns the value a sidecar runs with for the setting of flag:
// the command line, else its environment twin, else the default. known is
// false when the binary has no such setting or the value comes from a
// reference this test cannot read.
func (s *deployedSidecar) setting(b binarySettings, flag string) (value string, known bool) {
	if v, ok := s.flags[flag]; ok {
		return v, true
	}
	env, ok := b.envOf[flag]
	if !ok {
		return "", false
	}
	if v, ok := s.env[env]; ok {
		return v, true
	}
	if s.envRefs[env] {
		return "", false
	}
	return b.defaults[flag], true
}

type deployChecker struct {
	bin           binarySettings
	problems      []string
	sidecars      map[string]int             // file -> sidecars found
	secrets       map[string]map[string]bool // Secret name -> its keys
	configMaps    map[string]bool            // ConfigMap names
	secretRefs    []struct{ where, name, key string }
	configMapRefs []struct{ where, name string }
	sawDockerfile bool
}

func newDeployChecker(b binarySettings) *deployChecker {
	return &deployChecker{
		bin:        b,
		sidecars:   map[string]int{},
		secrets:    map[string]map[string]bool{},
		configMaps: map[string]bool{},
	}
}

func (c *deployChecker) problemf(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

// envName matches the sidecar's variables in any text: manifests, comments,
// compose interpolations and the README.
var envName = regexp.MustCompile(`\bDIREKTIV_AUTHZ_[A-Z0-9_]*[A-Z0-9]\b`)

// redisURL matches the Redis URLs given as examples, so that each is one the
// sidecar accepts. A $(VAR) in one is Kubernetes' expansion of a variable
// (the chart's $(REDIS_PASSWORD)); it is checked as a plain password.
var redisURL = regexp.MustCompile("\\brediss?(?:\\+sentinel|\\+cluster)?://(?:\\$\\([A-Za-z_][A-Za-z0-9_]*\\)|[^\\s\"'`<>()\\[\\]])+")

// k8sVarRef is a $(VAR) reference Kubernetes expands in env values and args.
var k8sVarRef = regexp.MustCompile(`\$\([A-Za-z_][A-Za-z0-9_]*\)`)

// readmeFlag matches a flag in inline code of a README: `--name`.
var readmeFlag = regexp.MustCompile("`--([a-z][a-z0-9-]*)")

func (c *deployChecker) checkFile(name string, data []byte) {
	where := "deploy/" + name
	c.checkText(where, data)
	base := path.Base(name)
	switch {
	case base == "Dockerfile":
		c.sawDockerfile = true
		c.checkDockerfile(where, data)
	case strings.HasSuffix(base, ".md"):
		for _, m := range readmeFlag.FindAllStringSubmatch(string(data), -1) {
			if !c.bin.flags[m[1]] {
				c.problemf("%s: `--%s` is not a flag of the binary", where, m[1])
			}
		}
	case isChartTemplate(name):
		// Go templates, not YAML: checked as helm template renders them
		// (helm_test.go).
	case strings.HasSuffix(base, ".yaml") || strings.HasSuffix(base, ".yml"):
		c.checkYAML(name, where, strings.HasPrefix(name, "kubernetes/"), data)
	}
}

// checkText checks what any text may name: the sidecar's variables and
// Redis URLs.
func (c *deployChecker) checkText(where string, data []byte) {
	for _, v := range uniqSorted(envName.FindAllString(string(data), -1)) {
		if !c.bin.env[v] {
			c.problemf("%s: %s is not a variable the binary reads (see config.go settings)", where, v)
		}
	}
	for _, u := range uniqSorted(redisURL.FindAllString(string(data), -1)) {
		u = strings.TrimRight(u, ".,;:")
		if _, err := redis.ParseURL(k8sVarRef.ReplaceAllString(u, "password")); err != nil {
			c.problemf("%s: %s: %v", where, u, err)
		}
	}
}

// isChartTemplate reports whether name, relative to deploy/, is a template of
// a Helm chart.
func isChartTemplate(name string) bool {
	dir := path.Dir(name)
	return strings.HasPrefix(name, "helm/") && path.Base(dir) == "templates"
}

// checkYAML checks the YAML file name (relative to deploy/, or a label for
// rendered output), where names it in messages. Kubernetes files are
// manifests (or, when named *-values.yaml, Helm values holding containers).
func (c *deployChecker) checkYAML(name, where string, kubernetes bool, data []byte) {
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for i := 1; ; i++ {
		var doc any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			c.problemf("%s: does not parse as YAML (document %d): %v", where, i, err)
			return
		}
		if doc == nil {
			continue
		}
		m, ok := doc.(map[string]any)
		if !ok {
			c.problemf("%s: document %d is not a mapping", where, i)
			continue
		}
		docs = append(docs, m)
	}
	manifest := kubernetes && !strings.HasSuffix(name, "-values.yaml")
	var found []*deployedSidecar
	for i, doc := range docs {
		if manifest {
			kind, _ := doc["kind"].(string)
			meta, _ := doc["metadata"].(map[string]any)
			objName, _ := meta["name"].(string)
			if _, ok := doc["apiVersion"].(string); !ok || kind == "" || objName == "" {
				c.problemf("%s: document %d lacks apiVersion, kind or metadata.name", where, i+1)
			}
			switch kind {
			case "Secret":
				keys := map[string]bool{}
				for _, field := range []string{"data", "stringData"} {
					d, _ := doc[field].(map[string]any)
					for k := range d {
						keys[k] = true
					}
				}
				c.secrets[objName] = keys
			case "ConfigMap":
				c.configMaps[objName] = true
			}
		}
		if services, ok := doc["services"].(map[string]any); ok && !kubernetes {
			for svcName, v := range services {
				svc, _ := v.(map[string]any)
				if isComposeSidecar(svc) {
					found = append(found, c.composeSidecar(where+": service "+svcName, name, svc))
				}
			}
			continue
		}
		walkSidecars(doc, nil, false, func(ctr, pod map[string]any) {
			cname, _ := ctr["name"].(string)
			found = append(found, c.k8sSidecar(where+": container "+cname, name, ctr, pod, doc))
		})
	}
	c.sidecars[name] += len(found)
	for _, s := range found {
		c.checkSidecar(s)
	}
	if kubernetes {
		c.checkServiceLinks(where, docs, found)
	}
}

// walkSidecars calls fn for every container running the sidecar in node:
// those of pod specs (a mapping with "containers"), with the pod, and those
// of lists elsewhere, such as a Helm chart's extraContainers, without one.
func walkSidecars(node any, pod map[string]any, inPod bool, fn func(ctr, pod map[string]any)) {
	switch n := node.(type) {
	case map[string]any:
		if isK8sSidecar(n) {
			if !inPod {
				pod = nil
			}
			fn(n, pod)
			return
		}
		for _, k := range slices.Sorted(maps.Keys(n)) {
			if k == "containers" || k == "initContainers" {
				walkSidecars(n[k], n, true, fn)
			} else {
				walkSidecars(n[k], nil, false, fn)
			}
		}
	case []any:
		for _, item := range n {
			walkSidecars(item, pod, inPod, fn)
		}
	}
}

func isK8sSidecar(m map[string]any) bool {
	image, _ := m["image"].(string)
	_, named := m["name"].(string)
	return named && strings.Contains(image, "direktiv-authz")
}

func isComposeSidecar(svc map[string]any) bool {
	if image, _ := svc["image"].(string); strings.Contains(image, "direktiv-authz") {
		return true
	}
	build, _ := svc["build"].(map[string]any)
	dockerfile, _ := build["dockerfile"].(string)
	return strings.HasSuffix(dockerfile, "deploy/Dockerfile")
}

func (c *deployChecker) k8sSidecar(where, file string, ctr, pod, doc map[string]any) *deployedSidecar {
	s := &deployedSidecar{where: where, file: file, env: map[string]string{}, envRefs: map[string]bool{}, k8s: ctr, pod: pod, doc: doc}
	command := yamlStrings(ctr["command"])
	if len(command) > 0 {
		command = command[1:] // the program
	}
	s.args = append(command, yamlStrings(ctr["args"])...)
	for _, e := range yamlList(ctr["env"]) {
		m, _ := e.(map[string]any)
		n, _ := m["name"].(string)
		if v, ok := m["value"]; ok {
			s.env[n] = fmt.Sprint(v)
		} else {
			s.envRefs[n] = true
		}
		ref := yamlDig(m, "valueFrom", "secretKeyRef")
		if ref != nil {
			sn, _ := ref["name"].(string)
			sk, _ := ref["key"].(string)
			c.secretRefs = append(c.secretRefs, struct{ where, name, key string }{where + " env " + n, sn, sk})
		}
	}
	return s
}

func (c *deployChecker) composeSidecar(where, file string, svc map[string]any) *deployedSidecar {
	s := &deployedSidecar{where: where, file: file, env: map[string]string{}, envRefs: map[string]bool{}}
	entry := yamlStrings(svc["entrypoint"])
	if len(entry) > 0 {
		entry = entry[1:]
	}
	s.args = append(entry, yamlStrings(svc["command"])...)
	switch env := svc["environment"].(type) {
	case map[string]any:
		for k, v := range env {
			if v == nil {
				s.envRefs[k] = true
			} else {
				s.env[k] = fmt.Sprint(v)
			}
		}
	case []any:
		for _, kv := range env {
			k, v, ok := strings.Cut(fmt.Sprint(kv), "=")
			if ok {
				s.env[k] = v
			} else {
				s.envRefs[k] = true
			}
		}
	}
	for k, v := range s.env {
		if strings.Contains(v, "${") { // interpolated by compose
			delete(s.env, k)
			s.envRefs[k] = true
		}
	}
	if user, ok := svc["user"]; ok && isRootUser(fmt.Sprint(user)) {
		c.problemf("%s: runs as user %s; the image's non-root user is 65532", where, user)
	}
	return s
}

// checkSidecar checks one container: its flags and arguments always; for
// Kubernetes also probes, security context, resources, the grace period and
// the policy mount.
func (c *deployChecker) checkSidecar(s *deployedSidecar) {
	s.flags = c.checkArgs(s.where, s.args)
	if s.k8s == nil {
		return
	}
	ctr := s.k8s
	for _, e := range yamlList(ctr["env"]) {
		m, _ := e.(map[string]any)
		if n, _ := m["name"].(string); n == "" {
			c.problemf("%s: an env entry without a name", s.where)
		}
	}

	// Probes: liveness on /healthz, readiness on /readyz, both on the ops port.
	opsPort := -1
	if addr, ok := s.setting(c.bin, "ops-listen"); !ok {
		if _, exists := c.bin.envOf["ops-listen"]; !exists {
			c.problemf("%s: the binary has no --ops-listen setting, which serves the probes", s.where)
		}
	} else if p, err := listenPort(addr); err != nil {
		c.problemf("%s: ops listen address %q: %v", s.where, addr, err)
	} else {
		opsPort = p
	}
	for _, probe := range []struct{ field, path string }{{"livenessProbe", "/healthz"}, {"readinessProbe", "/readyz"}} {
		get := yamlDig(ctr, probe.field, "httpGet")
		if get == nil {
			c.problemf("%s: no %s.httpGet (want %s on the ops port)", s.where, probe.field, probe.path)
			continue
		}
		if p, _ := get["path"].(string); p != probe.path {
			c.problemf("%s: %s asks %q, want %q", s.where, probe.field, p, probe.path)
		}
		port, err := probePort(ctr, get["port"])
		switch {
		case err != nil:
			c.problemf("%s: %s: %v", s.where, probe.field, err)
		case opsPort >= 0 && port != opsPort:
			c.problemf("%s: %s asks port %d, want the ops port %d", s.where, probe.field, port, opsPort)
		}
	}

	// Security: non-root, read-only root filesystem, no privilege escalation,
	// no capabilities.
	sc := yamlDig(ctr, "securityContext")
	podSC := yamlDig(s.pod, "securityContext")
	nonRoot := sc["runAsNonRoot"] == true || (sc["runAsNonRoot"] == nil && podSC["runAsNonRoot"] == true)
	if !nonRoot {
		c.problemf("%s: securityContext.runAsNonRoot is not true (container or pod)", s.where)
	}
	for _, ctx := range []map[string]any{sc, podSC} {
		if u, ok := ctx["runAsUser"]; ok && isRootUser(fmt.Sprint(u)) {
			c.problemf("%s: securityContext.runAsUser %v is root", s.where, u)
		}
	}
	if sc["readOnlyRootFilesystem"] != true {
		c.problemf("%s: securityContext.readOnlyRootFilesystem is not true", s.where)
	}
	if sc["allowPrivilegeEscalation"] != false {
		c.problemf("%s: securityContext.allowPrivilegeEscalation is not false", s.where)
	}
	if !slices.Contains(yamlStrings(yamlDig(sc, "capabilities")["drop"]), "ALL") {
		c.problemf("%s: securityContext.capabilities.drop lacks ALL", s.where)
	}

	for _, r := range []string{"requests.cpu", "requests.memory", "limits.memory"} {
		kind, res, _ := strings.Cut(r, ".")
		if _, ok := yamlDig(ctr, "resources", kind)[res]; !ok {
			c.problemf("%s: no resources.%s", s.where, r)
		}
	}

	// The kubelet must wait longer than a preStop sleep and the sidecar's
	// own shutdown grace together.
	if v, ok := s.setting(c.bin, "shutdown-grace"); ok {
		grace, err := time.ParseDuration(v)
		if err != nil {
			c.problemf("%s: shutdown grace %q: %v", s.where, v, err)
		}
		kill := k8sDefaultGrace
		if n, ok := s.pod["terminationGracePeriodSeconds"].(int); ok {
			kill = time.Duration(n) * time.Second
		}
		sleep := 0 * time.Second
		if n, ok := yamlDig(ctr, "lifecycle", "preStop", "sleep")["seconds"].(int); ok {
			sleep = time.Duration(n) * time.Second
		}
		if err == nil && sleep+grace >= kill {
			c.problemf("%s: preStop sleep %s + shutdown grace %s is not below the pod's terminationGracePeriodSeconds (%s)", s.where, sleep, grace, kill)
		}
	}

	// The policy directory is a whole ConfigMap volume (subPath mounts never
	// see updates), the secrets come from Secrets the manifests define.
	policies, _ := s.setting(c.bin, "policies")
	mounted := false
	for _, vm := range yamlList(ctr["volumeMounts"]) {
		m, _ := vm.(map[string]any)
		mp, _ := m["mountPath"].(string)
		vname, _ := m["name"].(string)
		vol := findVolume(s.doc, vname)
		if vol == nil {
			c.problemf("%s: volumeMount %s names no volume in the same document", s.where, vname)
			continue
		}
		if sec := yamlDig(vol, "secret"); sec != nil {
			sn, _ := sec["secretName"].(string)
			for _, item := range yamlList(sec["items"]) {
				im, _ := item.(map[string]any)
				k, _ := im["key"].(string)
				c.secretRefs = append(c.secretRefs, struct{ where, name, key string }{s.where + " volume " + vname, sn, k})
			}
		}
		if policies == "" || path.Clean(mp) != path.Clean(policies) {
			continue
		}
		mounted = true
		if _, ok := m["subPath"]; ok {
			c.problemf("%s: the policies (%s) are mounted with subPath, which never sees ConfigMap updates", s.where, mp)
		}
		if cm := yamlDig(vol, "configMap"); cm == nil {
			c.problemf("%s: the policies volume %s is not a ConfigMap", s.where, vname)
		} else {
			n, _ := cm["name"].(string)
			c.configMapRefs = append(c.configMapRefs, struct{ where, name string }{s.where, n})
		}
	}
	if policies != "" && !mounted {
		c.problemf("%s: the policy directory %s is not a volume mount", s.where, policies)
	}
	for _, fileFlag := range []string{"admin-token-file", "upstream-api-key-file"} {
		f, _ := s.setting(c.bin, fileFlag)
		if f == "" {
			continue
		}
		if !slices.ContainsFunc(yamlList(ctr["volumeMounts"]), func(vm any) bool {
			mp, _ := vm.(map[string]any)["mountPath"].(string)
			return mp != "" && strings.HasPrefix(path.Clean(f), path.Clean(mp)+"/")
		}) {
			c.problemf("%s: --%s %s is not inside a volume mount", s.where, fileFlag, f)
		}
	}
}

// checkArgs checks a command line's flags against the binary and returns the
// value given for each. Positional arguments are refused, as config.Parse
// refuses them.
func (c *deployChecker) checkArgs(where string, args []string) map[string]string {
	given := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if len(a) < 2 || a[0] != '-' || a == "--" {
			c.problemf("%s: unexpected argument %q (settings are --flags)", where, a)
			continue
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		name, value, hasValue := strings.Cut(name, "=")
		if !c.bin.flags[name] {
			c.problemf("%s: --%s is not a flag of the binary", where, name)
			continue
		}
		if !hasValue && !c.bin.bools[name] && i+1 < len(args) {
			i++
			value = args[i]
		}
		if !hasValue && c.bin.bools[name] {
			value = "true"
		}
		given[name] = value
	}
	return given
}

// checkServiceLinks makes sure Kubernetes' service links cannot put unknown
// DIREKTIV_AUTHZ_* variables into a sidecar: a Service named direktiv-authz*
// may only sit beside pods that switch them off.
func (c *deployChecker) checkServiceLinks(where string, docs []map[string]any, found []*deployedSidecar) {
	for _, doc := range docs {
		if doc["kind"] != "Service" {
			continue
		}
		name, _ := yamlDig(doc, "metadata")["name"].(string)
		prefix := strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_"
		if !strings.HasPrefix(prefix, "DIREKTIV_AUTHZ_") {
			continue
		}
		pods := 0
		for _, s := range found {
			if s.pod == nil {
				continue
			}
			pods++
			if s.pod["enableServiceLinks"] != false {
				c.problemf("%s: Service %s makes Kubernetes inject %sSERVICE_HOST and more into pods of its namespace, which the sidecar refuses as unknown variables: set enableServiceLinks: false in %s's pod spec", where, name, prefix, s.where)
			}
		}
		if pods == 0 {
			c.problemf("%s: Service %s makes Kubernetes inject %sSERVICE_HOST and more into the sidecar's pods, which it refuses as unknown variables: rename it", where, name, prefix)
		}
	}
}

// checkDockerfile checks the final stage: a non-root USER, an exec-form
// ENTRYPOINT whose flags the binary has, and the exposed ports.
func (c *deployChecker) checkDockerfile(where string, data []byte) {
	type instruction struct{ cmd, rest string }
	var stage []instruction
	var joined string
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if joined == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			joined += strings.TrimSuffix(trimmed, "\\") + " "
			continue
		}
		joined += trimmed
		cmd, rest, _ := strings.Cut(joined, " ")
		joined = ""
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage = nil
		}
		stage = append(stage, instruction{cmd, strings.TrimSpace(rest)})
	}
	var user string
	var args []string
	exposed := map[int]bool{}
	entrypoint := false
	for _, in := range stage {
		switch in.cmd {
		case "USER":
			user = in.rest
		case "ENTRYPOINT", "CMD":
			var tokens []string
			if err := json.Unmarshal([]byte(in.rest), &tokens); err != nil {
				c.problemf("%s: %s %s is not the exec (JSON) form, so the binary would not get SIGTERM as PID 1", where, in.cmd, in.rest)
				continue
			}
			if in.cmd == "ENTRYPOINT" {
				entrypoint = true
				if len(tokens) > 0 {
					tokens = tokens[1:]
				}
			}
			args = append(args, tokens...)
		case "EXPOSE":
			for _, p := range strings.Fields(in.rest) {
				n, _ := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
				exposed[n] = true
			}
		}
	}
	if user == "" || isRootUser(user) {
		c.problemf("%s: the final stage runs as USER %s; want a non-root user such as 65532", where, cmp.Or(user, "root (none set)"))
	}
	if !entrypoint {
		c.problemf("%s: the final stage has no ENTRYPOINT", where)
	}
	c.checkArgs(where+": ENTRYPOINT/CMD", args)
	for _, flag := range []string{"listen", "ops-listen"} {
		addr, ok := c.bin.defaults[flag]
		if !ok {
			continue
		}
		if p, err := listenPort(addr); err == nil && !exposed[p] {
			c.problemf("%s: EXPOSE lacks %d, the default --%s port", where, p, flag)
		}
	}
}

// finish runs the checks that span files: every Secret key and ConfigMap a
// sidecar uses is defined under deploy/kubernetes.
func (c *deployChecker) finish() {
	for _, r := range c.secretRefs {
		keys, ok := c.secrets[r.name]
		switch {
		case !ok && len(c.secrets) > 0:
			c.problemf("%s: Secret %q is not defined under deploy/kubernetes", r.where, r.name)
		case ok && !keys[r.key]:
			c.problemf("%s: Secret %q has no key %q", r.where, r.name, r.key)
		}
	}
	for _, r := range c.configMapRefs {
		if len(c.configMaps) > 0 && !c.configMaps[r.name] {
			c.problemf("%s: ConfigMap %q is not defined under deploy/kubernetes", r.where, r.name)
		}
	}
}

// checkPolicyConfigMap compares the policies ConfigMap with the policy
// files (name -> content), byte for byte.
func checkPolicyConfigMap(data []byte, files map[string]string) []string {
	var cm struct {
		Kind       string            `yaml:"kind"`
		Data       map[string]string `yaml:"data"`
		BinaryData map[string]string `yaml:"binaryData"`
	}
	if err := yaml.Unmarshal(data, &cm); err != nil {
		return []string{fmt.Sprintf("deploy/%s: does not parse: %v", policiesConfigMap, err)}
	}
	var problems []string
	if cm.Kind != "ConfigMap" {
		problems = append(problems, fmt.Sprintf("deploy/%s: kind %q, want ConfigMap", policiesConfigMap, cm.Kind))
	}
	if len(cm.BinaryData) > 0 {
		problems = append(problems, fmt.Sprintf("deploy/%s: has binaryData; the policies are text", policiesConfigMap))
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		got, ok := cm.Data[name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("deploy/%s: policies/%s is missing; regenerate with deploy/kubernetes/gen-configmap.sh", policiesConfigMap, name))
		case got != files[name]:
			problems = append(problems, fmt.Sprintf("deploy/%s: %s differs from policies/%s; regenerate with deploy/kubernetes/gen-configmap.sh", policiesConfigMap, name, name))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cm.Data)) {
		if _, ok := files[name]; !ok {
			problems = append(problems, fmt.Sprintf("deploy/%s: %s is not in policies/; regenerate with deploy/kubernetes/gen-configmap.sh", policiesConfigMap, name))
		}
	}
	return problems
}

func mustPolicyFiles(tb testing.TB) map[string]string {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join(policiesDir, "*.rego"))
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no policies/*.rego (%v)", err)
	}
	files := map[string]string{}
	for _, p := range paths {
		files[filepath.Base(p)] = mustReadFile(tb, p)
	}
	return files
}

func mustReadFile(tb testing.TB, p string) string {
	tb.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// containerPort resolves a probe's port, a number or the name of one of the
// container's ports.
func probePort(ctr map[string]any, port any) (int, error) {
	switch p := port.(type) {
	case int:
		return p, nil
	case string:
		for _, cp := range yamlList(ctr["ports"]) {
			m, _ := cp.(map[string]any)
			if m["name"] == p {
				if n, ok := m["containerPort"].(int); ok {
					return n, nil
				}
			}
		}
		if n, err := strconv.Atoi(p); err == nil {
			return n, nil
		}
		return 0, fmt.Errorf("port %q is not a port of the container", p)
	}
	return 0, fmt.Errorf("no port")
}

// findVolume returns the volume named name anywhere in doc: a pod spec's
// volumes, or a Helm chart's extraVolumes.
func findVolume(doc map[string]any, name string) map[string]any {
	var found map[string]any
	var walk func(any)
	walk = func(n any) {
		switch n := n.(type) {
		case map[string]any:
			if n["name"] == name && (n["configMap"] != nil || n["secret"] != nil || n["emptyDir"] != nil || n["projected"] != nil) {
				found = n
				return
			}
			for _, v := range n {
				walk(v)
			}
		case []any:
			for _, v := range n {
				walk(v)
			}
		}
	}
	walk(doc)
	return found
}

func listenPort(addr string) (int, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(port)
}

func isRootUser(u string) bool {
	name, _, _ := strings.Cut(u, ":")
	return name == "0" || name == "root"
}

// dig follows keys through nested mappings; nil when one is missing.
func yamlDig(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		next, ok := m[k].(map[string]any)
		if !ok {
			return nil
		}
		m = next
	}
	return m
}

func yamlList(v any) []any {
	l, _ := v.([]any)
	return l
}

// stringList reads a command: a YAML list, or a string split on spaces.
func yamlStrings(v any) []string {
	switch v := v.(type) {
	case string:
		return strings.Fields(v)
	case []any:
		out := make([]string, 0, len(v))
		for _, s := range v {
			out = append(out, fmt.Sprint(s))
		}
		return out
	}
	return nil
}

func uniqSorted(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}
