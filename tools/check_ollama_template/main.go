// check_ollama_template: renders a cotune-written Ollama Modelfile's TEMPLATE with Go's text/template the way
// Ollama does (template/template.go: Execute with .System = the system messages joined by a blank line, .Messages =
// the conversation with consecutive same-role messages merged, system messages kept in it) and compares each
// rendering with the expected text (transformers' apply_chat_template, as `cotune chat-template` writes it).
//
//	go run ./tools/check_ollama_template MODELFILE CASES.jsonl [STRIP_PREFIX]
//
// CASES.jsonl: {"messages": [{"role", "content"}...], "text": expected} per line. STRIP_PREFIX (e.g. the BOS
// text when the GGUF's tokenizer adds BOS itself) is removed from the front of each expected text.
// Prints one line per case and exits 1 if any differs. Also checks the Modelfile parses as Ollama's parser
// reads it: FROM first, TEMPLATE """...""" once, PARAMETER stop "..." lines.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
)

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type testCase struct {
	Messages []message `json:"messages"`
	Text     string    `json:"text"`
}

type modelfile struct {
	from     string
	template string
	stops    []string
}

func parseModelfile(text string) (modelfile, error) {
	var mf modelfile
	pos := 0
	for pos < len(text) {
		end := strings.IndexByte(text[pos:], '\n')
		if end < 0 {
			end = len(text)
		} else {
			end += pos
		}
		line := text[pos:end]
		next := end + 1
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "" || strings.HasPrefix(trimmed, "#"):
		case strings.HasPrefix(trimmed, "FROM "):
			if mf.from != "" {
				return mf, fmt.Errorf("FROM given twice")
			}
			mf.from = strings.TrimSpace(trimmed[5:])
		case strings.HasPrefix(trimmed, "TEMPLATE \"\"\""):
			if mf.template != "" {
				return mf, fmt.Errorf("TEMPLATE given twice")
			}
			start := pos + strings.Index(line, "\"\"\"") + 3
			close := strings.Index(text[start:], "\"\"\"")
			if close < 0 {
				return mf, fmt.Errorf("TEMPLATE \"\"\" is never closed")
			}
			mf.template = text[start : start+close]
			after := start + close + 3
			lineEnd := strings.IndexByte(text[after:], '\n')
			if lineEnd < 0 {
				lineEnd = len(text) - after
			}
			if strings.TrimSpace(text[after:after+lineEnd]) != "" {
				return mf, fmt.Errorf("text after the closing \"\"\" of TEMPLATE: %q", text[after:after+lineEnd])
			}
			next = after + lineEnd + 1
		case strings.HasPrefix(trimmed, "PARAMETER stop "):
			v := strings.TrimSpace(trimmed[len("PARAMETER stop "):])
			if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
				return mf, fmt.Errorf("PARAMETER stop value is not quoted: %s", v)
			}
			mf.stops = append(mf.stops, v[1:len(v)-1])
		default:
			return mf, fmt.Errorf("unknown Modelfile line: %q", line)
		}
		pos = next
	}
	if mf.from == "" {
		return mf, fmt.Errorf("no FROM")
	}
	return mf, nil
}

// collate as Ollama's template package does.
func collate(msgs []message) (string, []*message) {
	var system []string
	var out []*message
	for i := range msgs {
		m := msgs[i]
		if m.Role == "system" {
			system = append(system, m.Content)
		}
		if len(out) > 0 && out[len(out)-1].Role == m.Role && m.Role != "tool" {
			out[len(out)-1].Content += "\n\n" + m.Content
		} else {
			out = append(out, &m)
		}
	}
	return strings.Join(system, "\n\n"), out
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: check_ollama_template MODELFILE CASES.jsonl [STRIP_PREFIX]")
		os.Exit(2)
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	mf, err := parseModelfile(string(raw))
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	if mf.template == "" {
		fmt.Printf("%s: no TEMPLATE (Ollama falls back to the GGUF's chat template); stops %q\n", os.Args[1], mf.stops)
		return
	}
	tmpl, err := template.New("").Parse(mf.template)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: TEMPLATE does not parse: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	strip := ""
	if len(os.Args) > 3 {
		strip = os.Args[3]
	}
	f, err := os.Open(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	n, bad := 0, 0
	for sc.Scan() {
		var c testCase
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			fmt.Fprintf(os.Stderr, "%s line %d: %v\n", os.Args[2], n+1, err)
			os.Exit(2)
		}
		n++
		system, msgs := collate(c.Messages)
		var b bytes.Buffer
		if err := tmpl.Execute(&b, map[string]any{"System": system, "Messages": msgs, "Tools": nil, "Response": ""}); err != nil {
			fmt.Printf("case %d: FAIL executing: %v\n", n, err)
			bad++
			continue
		}
		want := strings.TrimPrefix(c.Text, strip)
		if b.String() != want {
			fmt.Printf("case %d: FAIL\n  ollama: %q\n  want:   %q\n", n, b.String(), want)
			bad++
		}
	}
	fmt.Printf("%s: %d/%d conversations render as transformers does; stops %q\n", os.Args[1], n-bad, n, mf.stops)
	if bad > 0 {
		os.Exit(1)
	}
}
