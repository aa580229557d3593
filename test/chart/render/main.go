// colo-helm-render renders a Helm chart the way `helm template` does, with the engines Helm
// itself uses: Go's text/template and sprig v3 (from Debian's packages), plus Helm's own
// functions (include, tpl, required, fail, toYaml, fromYaml, toJson, fromJson, lookup). No helm binary
// can be installed here; this is what lets CI render charts/colo and check the result.
//
//	colo-helm-render [-f values.yaml]... [--name R] [--namespace NS] [--notes] CHART_DIR
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

func readYAML(path string) (map[string]interface{}, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return out, nil
}

// merge overlays src onto dst as Helm merges values files: maps merge, everything else replaces.
func merge(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if sm, ok := v.(map[string]interface{}); ok {
			if dm, ok := dst[k].(map[string]interface{}); ok {
				dst[k] = merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
	return dst
}

func toYAML(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func main() {
	var files valueFiles
	flag.Var(&files, "f", "a values file merged over the chart's values.yaml (repeatable)")
	name := flag.String("name", "colo", "release name")
	namespace := flag.String("namespace", "kube-system", "release namespace")
	notes := flag.Bool("notes", false, "render NOTES.txt instead of the manifests")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: colo-helm-render [-f values.yaml]... [--name R] [--namespace NS] [--notes] CHART_DIR")
		os.Exit(2)
	}
	dir := flag.Arg(0)
	fail := func(format string, a ...interface{}) {
		fmt.Fprintf(os.Stderr, "colo-helm-render: "+format+"\n", a...)
		os.Exit(1)
	}

	chart, err := readYAML(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		fail("%v", err)
	}
	values, err := readYAML(filepath.Join(dir, "values.yaml"))
	if err != nil {
		fail("%v", err)
	}
	for _, f := range files {
		extra, err := readYAML(f)
		if err != nil {
			fail("%v", err)
		}
		values = merge(values, extra)
	}
	chartName := fmt.Sprint(chart["name"])
	top := map[string]interface{}{
		"Values":  values,
		"Release": map[string]interface{}{"Name": *name, "Namespace": *namespace, "Service": "Helm", "IsInstall": true, "IsUpgrade": false, "Revision": 1},
		"Chart": map[string]interface{}{"Name": chartName, "Version": chart["version"], "AppVersion": chart["appVersion"],
			"Description": chart["description"]},
		"Capabilities": map[string]interface{}{"KubeVersion": map[string]interface{}{"Version": "v1.31.0", "Major": "1", "Minor": "31"}},
	}

	root := template.New("chart")
	funcs := sprig.TxtFuncMap()
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		_ = yaml.Unmarshal([]byte(s), &m)
		return m
	}
	funcs["toJson"] = func(v interface{}) string { b, _ := json.Marshal(v); return string(b) }
	funcs["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		_ = json.Unmarshal([]byte(s), &m)
		return m
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, fmt.Errorf(msg)
		}
		return v, nil
	}
	// Helm's fail: the rendering stops with the chart's message.
	funcs["fail"] = func(msg string) (string, error) { return "", fmt.Errorf("%s", msg) }
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return buf.String(), err
	}
	funcs["lookup"] = func(string, string, string, string) map[string]interface{} { return map[string]interface{}{} }
	root.Funcs(funcs).Option("missingkey=zero")

	tdir := filepath.Join(dir, "templates")
	entries, err := os.ReadDir(tdir)
	if err != nil {
		fail("%v", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(tdir, e.Name()))
		if err != nil {
			fail("%v", err)
		}
		full := chartName + "/templates/" + e.Name()
		if _, err := root.New(full).Parse(string(data)); err != nil {
			fail("%v", err)
		}
		names = append(names, e.Name())
	}
	sort.Strings(names)
	var out bytes.Buffer
	for _, n := range names {
		isNotes := n == "NOTES.txt"
		if strings.HasPrefix(n, "_") || isNotes != *notes || (!isNotes && !strings.HasSuffix(n, ".yaml")) {
			continue
		}
		full := chartName + "/templates/" + n
		// Helm gives every template .Template.Name and .Template.BasePath.
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{"Name": full, "BasePath": chartName + "/templates"}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, full, data); err != nil {
			fail("%v", err)
		}
		text := strings.TrimSpace(strings.ReplaceAll(buf.String(), "<no value>", ""))
		if text == "" {
			continue
		}
		if *notes {
			out.WriteString(text + "\n")
			continue
		}
		for _, doc := range strings.Split(text, "\n---\n") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", full, strings.TrimSpace(doc))
		}
	}
	os.Stdout.Write(out.Bytes())
}
