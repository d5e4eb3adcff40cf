package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// testdata/control-protocol.json is shared with the TypeScript control
// plane, whose tests check that it writes exactly these requests and reads
// these events and responses. This side checks that the Go types read and
// write exactly the same JSON: unknown fields are refused, and re-encoding
// must give back the fixture, which also catches a field spelt in another
// case (encoding/json would accept "User" for "user" silently). Zero values
// are left out of the fixture, as omitempty leaves them out on the wire.

type fixture struct {
	Description string `json:"description"`
	Requests    []struct {
		Op   string          `json:"op"`
		Args json.RawMessage `json:"args,omitempty"`
	} `json:"requests"`
	Events []struct {
		Event string          `json:"event"`
		Data  json.RawMessage `json:"data,omitempty"`
	} `json:"events"`
	Responses []struct {
		Op       string          `json:"op"`
		Response json.RawMessage `json:"response"`
	} `json:"responses"`
	Login []json.RawMessage `json:"login"`
}

func loadFixture(t *testing.T) *fixture {
	t.Helper()
	b, err := os.ReadFile("testdata/control-protocol.json")
	if err != nil {
		t.Fatal(err)
	}
	var f fixture
	if err := decodeStrict(b, &f); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return &f
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return io.ErrUnexpectedEOF // trailing data; the message hardly matters
	}
	return nil
}

// sameJSON fails unless got encodes to the same value as want.
func sameJSON(t *testing.T, what string, got any, want []byte) {
	t.Helper()
	enc, err := json.Marshal(got)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	var a, b any
	if err := json.Unmarshal(enc, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("%s re-encodes as\n\t%s\nwant\n\t%s", what, enc, bytes.Join(bytes.Fields(want), []byte(" ")))
	}
}

// jsonFields lists the JSON names of a struct type's fields.
func jsonFields(typ reflect.Type) []string {
	var names []string
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "-" && f.IsExported() {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// topKeys returns the keys of a JSON object.
func topKeys(t *testing.T, raw []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return slices.Collect(maps.Keys(m))
}

// fieldByJSON returns the field of struct v whose JSON name is name.
func fieldByJSON(v reflect.Value, name string) (reflect.Value, bool) {
	for i := range v.NumField() {
		if n, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ","); n == name {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

// argsTypes is the Go type each op's args decode into.
var argsTypes = map[string]reflect.Type{
	"status":  reflect.TypeFor[StatusArgs](),
	"whois":   reflect.TypeFor[WhoisArgs](),
	"observe": reflect.TypeFor[ObserveArgs](),
	"listen":  reflect.TypeFor[ListenArgs](),
	"forward": reflect.TypeFor[ForwardArgs](),
	"close":   reflect.TypeFor[CloseArgs](),
	"denied":  reflect.TypeFor[DeniedArgs](),
	"quota":   reflect.TypeFor[QuotaArgs](),
}

// requiredArgs must be present and non-zero in every request of the op.
var requiredArgs = map[string][]string{
	"whois":   {"addr"},
	"listen":  {"name", "port", "target"},
	"forward": {"name", "targets"},
	"close":   {"name"},
	"denied":  {"ip"},
	"quota":   {"ip"},
}

// resultTypes is the Go type each op's successful result encodes from.
var resultTypes = map[string]reflect.Type{
	"status":  reflect.TypeFor[Status](),
	"whois":   reflect.TypeFor[WhoIsResult](),
	"observe": reflect.TypeFor[Observed](),
	"listen":  reflect.TypeFor[ListenResult](),
	"forward": reflect.TypeFor[ForwardResult](),
	"close":   reflect.TypeFor[struct{}](),
	"denied":  reflect.TypeFor[struct{}](),
	"quota":   reflect.TypeFor[struct{}](),
}

// eventTypes is the Go type each event's data encodes from; nil for none.
var eventTypes = map[string]reflect.Type{
	EventUp:     reflect.TypeFor[Status](),
	EventPeers:  reflect.TypeFor[Status](),
	EventNetmap: nil,
	EventReady:  reflect.TypeFor[ReadyEvent](),
	EventFatal:  reflect.TypeFor[ErrorBody](),
}

// The ops a node serves, the ops this test knows and the ops in the
// fixture must be the same set, so a new op cannot skip the fixture.
func TestFixtureCoversEveryOp(t *testing.T) {
	ch := NewChannel(io.Discard)
	(&Node{}).HandleOps(context.Background(), ch)
	served := slices.Sorted(maps.Keys(ch.handlers))
	if known := slices.Sorted(maps.Keys(argsTypes)); !slices.Equal(served, known) {
		t.Errorf("ops served %q, ops this test knows %q", served, known)
	}
	var inFixture []string
	for _, r := range loadFixture(t).Requests {
		inFixture = append(inFixture, r.Op)
	}
	slices.Sort(inFixture)
	if inFixture = slices.Compact(inFixture); !slices.Equal(served, inFixture) {
		t.Errorf("ops served %q, ops in the fixture %q", served, inFixture)
	}
}

func TestFixtureRequests(t *testing.T) {
	seen := map[string]map[string]bool{} // op -> args keys seen
	for i, r := range loadFixture(t).Requests {
		t.Run(strconv.Itoa(i)+"_"+r.Op, func(t *testing.T) {
			typ, ok := argsTypes[r.Op]
			if !ok {
				t.Fatalf("op %q has no args type", r.Op)
			}
			v := reflect.New(typ)
			// DecodeArgs is what the handlers use: strict, then Validate.
			if err := DecodeArgs(r.Args, v.Interface()); err != nil {
				t.Fatalf("args %s: %v", r.Args, err)
			}
			for _, name := range requiredArgs[r.Op] {
				f, ok := fieldByJSON(v.Elem(), name)
				if !ok {
					t.Fatalf("%s has no field %q", typ, name)
				}
				if f.IsZero() {
					t.Errorf("required %q is missing or zero", name)
				}
			}
			if r.Args == nil {
				return
			}
			sameJSON(t, typ.String(), v.Interface(), r.Args)
			if seen[r.Op] == nil {
				seen[r.Op] = map[string]bool{}
			}
			for _, k := range topKeys(t, r.Args) {
				seen[r.Op][k] = true
			}
		})
	}
	// Every field of every args type appears in some request, so that a
	// field added on either side cannot go untested.
	for op, typ := range argsTypes {
		want := jsonFields(typ)
		got := slices.Sorted(maps.Keys(seen[op]))
		if len(want) > 0 && !slices.Equal(got, want) {
			t.Errorf("op %s: fixture args use fields %q, %s has %q", op, got, typ, want)
		}
	}
}

func TestFixtureEvents(t *testing.T) {
	seen := map[string]bool{}
	for i, e := range loadFixture(t).Events {
		t.Run(strconv.Itoa(i)+"_"+e.Event, func(t *testing.T) {
			seen[e.Event] = true
			typ, ok := eventTypes[e.Event]
			if !ok {
				t.Fatalf("the bridge emits no event %q", e.Event)
			}
			if typ == nil {
				if e.Data != nil {
					t.Errorf("event %s carries no data, fixture has %s", e.Event, e.Data)
				}
				return
			}
			v := reflect.New(typ)
			if err := decodeStrict(e.Data, v.Interface()); err != nil {
				t.Fatalf("data %s: %v", e.Data, err)
			}
			sameJSON(t, typ.String(), v.Interface(), e.Data)
			whole, _ := json.Marshal(e)
			sameJSON(t, "Event", Event{Event: e.Event, Data: v.Interface()}, whole)
			if e.Event != EventPeers { // peers repeats up's shape
				if got, want := slices.Sorted(slices.Values(topKeys(t, e.Data))), jsonFields(typ); !slices.Equal(got, want) {
					t.Errorf("fixture data uses fields %q, %s has %q", got, typ, want)
				}
			}
		})
	}
	for name := range eventTypes {
		if !seen[name] {
			t.Errorf("event %q is missing from the fixture", name)
		}
	}
}

func TestFixtureResponses(t *testing.T) {
	codes := errorCodes(t)
	var oks, errs int
	seen := map[string]bool{}
	for i, r := range loadFixture(t).Responses {
		t.Run(strconv.Itoa(i)+"_"+r.Op, func(t *testing.T) {
			var resp struct {
				ID     int64           `json:"id"`
				OK     bool            `json:"ok"`
				Result json.RawMessage `json:"result"`
				Error  *ErrorBody      `json:"error"`
			}
			if err := decodeStrict(r.Response, &resp); err != nil {
				t.Fatalf("response %s: %v", r.Response, err)
			}
			if resp.ID == 0 {
				t.Error("response without id")
			}
			if !resp.OK {
				errs++
				if resp.Error == nil || resp.Result != nil {
					t.Fatalf("error response needs error and no result: %s", r.Response)
				}
				if !codes[resp.Error.Code] || resp.Error.Message == "" {
					t.Errorf("error %+v: code not declared in codes.go, or no message", resp.Error)
				}
				sameJSON(t, "Response", Response{ID: resp.ID, Error: resp.Error}, r.Response)
				return
			}
			oks++
			seen[r.Op] = true
			typ, ok := resultTypes[r.Op]
			if !ok {
				t.Fatalf("op %q has no result type", r.Op)
			}
			v := reflect.New(typ)
			if err := decodeStrict(resp.Result, v.Interface()); err != nil {
				t.Fatalf("result %s: %v", resp.Result, err)
			}
			sameJSON(t, "Response", Response{ID: resp.ID, OK: true, Result: v.Interface()}, r.Response)
		})
	}
	if oks == 0 || errs == 0 {
		t.Errorf("fixture has %d success and %d error responses, want some of each", oks, errs)
	}
	for op := range argsTypes {
		if !seen[op] {
			t.Errorf("no success response for op %q in the fixture", op)
		}
	}
}

// The login the control plane writes on --login-fd decodes strictly into
// Login and re-encodes as itself, and every field of Login is used.
func TestFixtureLogin(t *testing.T) {
	seen := map[string]bool{}
	for i, raw := range loadFixture(t).Login {
		var l Login
		if err := decodeStrict(raw, &l); err != nil {
			t.Fatalf("login %d %s: %v", i, raw, err)
		}
		if l == (Login{}) {
			t.Errorf("login %d is empty", i)
		}
		sameJSON(t, "Login", l, raw)
		for _, k := range topKeys(t, raw) {
			seen[k] = true
		}
	}
	if got, want := slices.Sorted(maps.Keys(seen)), jsonFields(reflect.TypeFor[Login]()); !slices.Equal(got, want) {
		t.Errorf("fixture logins use fields %q, Login has %q", got, want)
	}
}

// errorCodes reads the code strings declared in codes.go.
func errorCodes(t *testing.T) map[string]bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "codes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			s, _ := strconv.Unquote(lit.Value)
			codes[s] = true
		}
		return true
	})
	return codes
}

// Codes are the control plane's to branch on: each is ERR_-prefixed and
// no two constants share one.
func TestErrorCodes(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "codes.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					t.Errorf("%s is not a string literal", name)
					continue
				}
				code, _ := strconv.Unquote(lit.Value)
				if !strings.HasPrefix(code, "ERR_") || !strings.HasPrefix(name.Name, "Err") {
					t.Errorf("%s = %q: want ErrX = \"ERR_X\"", name, code)
				}
				if prev, dup := seen[code]; dup {
					t.Errorf("%s and %s share %q", prev, name, code)
				}
				seen[code] = name.Name
			}
		}
	}
	if len(seen) == 0 {
		t.Fatal("no codes found in codes.go")
	}
}
