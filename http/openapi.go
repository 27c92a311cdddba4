package http

import (
	"encoding/json"
	"maps"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/paysim"
)

// openAPI describes every route in OpenAPI 3.1, built from the same table the mux serves, so
// the description cannot drift from the API.
func (s *Server) openAPI() map[string]any {
	schemas := newSchemaSet()
	paths := map[string]map[string]any{}
	for _, rt := range s.routes { // answers first: a type that is also a request is then told apart
		if rt.out != nil {
			schemas.ref(reflect.TypeOf(rt.out), false)
		}
	}
	errRef := schemas.ref(reflect.TypeOf(ErrorBody{}), false)
	errResponse := map[string]any{"description": "error", "content": map[string]any{"application/json": map[string]any{"schema": errRef}}}
	for _, rt := range s.routes {
		op := map[string]any{
			"summary":     rt.summary,
			"operationId": strings.ToLower(rt.method) + strings.NewReplacer("/", "_", "-", "_", "{", "", "}", "").Replace(rt.path),
		}
		var params []any
		for _, seg := range strings.Split(rt.path, "/") {
			if name, ok := strings.CutPrefix(seg, "{"); ok {
				name = strings.TrimSuffix(name, "}")
				params = append(params, map[string]any{"name": name, "in": "path", "required": true, "schema": pathParamSchema(name)})
			}
		}
		for _, q := range rt.query {
			params = append(params, map[string]any{"name": q, "in": "query", "schema": map[string]any{"type": "string"}})
		}
		if params != nil {
			op["parameters"] = params
		}
		if rt.in != nil {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/json": map[string]any{"schema": schemas.ref(reflect.TypeOf(rt.in), true)}}}
		} else if len(rt.bodyTypes) > 0 {
			content := map[string]any{}
			for _, t := range rt.bodyTypes {
				content[t] = map[string]any{}
			}
			op["requestBody"] = map[string]any{"required": true, "content": content}
		}
		ok := map[string]any{"description": "success"}
		switch {
		case rt.stream != nil && rt.produces != "":
			ok["content"] = map[string]any{rt.produces: map[string]any{"schema": map[string]any{"type": "string"}}}
		case rt.stream != nil:
			ok["content"] = map[string]any{"text/event-stream": map[string]any{"schema": map[string]any{"type": "string",
				"description": "server-sent events, each data line one " + reflect.TypeOf(rt.out).Name() + " in JSON"}}}
		case rt.out != nil:
			ok["content"] = map[string]any{"application/json": map[string]any{"schema": schemas.ref(reflect.TypeOf(rt.out), false)}}
		}
		responses := map[string]any{strconv.Itoa(rt.status): ok, "4XX": errResponse, "5XX": errResponse}
		for _, st := range rt.also {
			responses[strconv.Itoa(st)] = ok
		}
		op["responses"] = responses
		if rt.access == signedIn {
			op["security"] = []any{map[string]any{"bearer": []any{}}}
		}
		if paths[rt.path] == nil {
			paths[rt.path] = map[string]any{}
		}
		paths[rt.path][strings.ToLower(rt.method)] = op
	}
	get := func(path, summary, contentType string, schema map[string]any) {
		paths[path] = map[string]any{"get": map[string]any{
			"summary": summary, "operationId": "get" + strings.NewReplacer("/", "_", ".", "_", "{", "", "}", "").Replace(path),
			"responses": map[string]any{"200": map[string]any{"description": "success",
				"content": map[string]any{contentType: map[string]any{"schema": schema}}}},
		}}
	}
	get("/healthz", "Liveness: the process answers", "application/json", map[string]any{"type": "object"})
	get("/readyz", "Readiness: every configured backend answers (503 otherwise)", "application/json", schemas.ref(reflect.TypeOf(Readiness{}), false))
	get("/metrics", "Prometheus metrics", "text/plain", map[string]any{"type": "string"})
	get("/openapi.json", "This description", "application/json", map[string]any{"type": "object"})
	paths["/readyz"]["get"].(map[string]any)["responses"].(map[string]any)["503"] = map[string]any{"description": "not ready",
		"content": map[string]any{"application/json": map[string]any{"schema": schemas.ref(reflect.TypeOf(Readiness{}), false)}}}
	if s.deps.Board != nil {
		page := map[string]any{"type": "string"}
		get("/live", "The platform's big screen (a page; the access token goes in the address's fragment, #token=…)", "text/html", page)
		get("/live/{room}", "A live room's big screen (a page; the access token goes in the address's fragment, #token=…)", "text/html", page)
		room := paths["/live/{room}"]["get"].(map[string]any)
		room["parameters"] = []any{map[string]any{"name": "room", "in": "path", "required": true, "schema": map[string]any{"type": "string"},
			"description": "a room's name; screen.js and screen.css are the page's script and style"}}
		content := room["responses"].(map[string]any)["200"].(map[string]any)["content"].(map[string]any)
		content["text/javascript"], content["text/css"] = map[string]any{"schema": page}, map[string]any{"schema": page}
	}
	if s.deps.Paysim != nil {
		paysimErr := map[string]any{"description": "refused", "content": map[string]any{
			"application/json": map[string]any{"schema": schemas.ref(reflect.TypeOf(paysim.ErrorBody{}), false)}}}
		paths["/paysim/v1/pay"] = map[string]any{"post": map[string]any{
			"summary": "The simulated payment provider's payment page: charges a payment ticket from POST /v1/orders/{id}/pay " +
				"(its pay_url) and calls the merchant back; 409 if the transaction is already paid, 403 for a bad or expired ticket, 503 with Retry-After-Ms when busy",
			"operationId": "post_paysim_v1_pay",
			"requestBody": map[string]any{"required": true, "content": map[string]any{
				"application/json": map[string]any{"schema": schemas.ref(reflect.TypeOf(paysim.PayRequest{}), true)}}},
			"responses": map[string]any{
				"200": map[string]any{"description": "charged", "content": map[string]any{
					"application/json": map[string]any{"schema": schemas.ref(reflect.TypeOf(paysim.PayResponse{}), false)}}},
				"4XX": paysimErr, "5XX": paysimErr,
			},
		}}
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info":    map[string]any{"title": "Surge API", "version": "1"},
		"paths":   paths,
		"components": map[string]any{
			"schemas":         schemas.m,
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
		},
	}
}

// pathParamSchema is the schema of a path parameter, by its name: ids are decimal numbers, a
// metric's name is its catalog name, a purchase ticket is opaque.
func pathParamSchema(name string) map[string]any {
	switch name {
	case "id", "item", "user":
		return map[string]any{"type": "string", "pattern": "^[0-9]+$"}
	case "name":
		return map[string]any{"type": "string", "pattern": "^[a-z][a-z_]*$"}
	}
	return map[string]any{"type": "string"}
}

var (
	timeType    = reflect.TypeOf(time.Time{})
	rawJSONType = reflect.TypeOf(json.RawMessage{})
	idListType  = reflect.TypeOf(surge.IDList{})
)

// orNull is a schema that also takes null.
func orNull(sc map[string]any) map[string]any {
	if t, ok := sc["type"].(string); ok {
		out := maps.Clone(sc)
		out["type"] = []any{t, "null"}
		return out
	}
	return map[string]any{"anyOf": []any{sc, map[string]any{"type": "null"}}}
}

// schemaSet builds the components' schemas. A type's schema as an answer lists the fields Go
// always writes as required; as a request it requires none (an absent field is its zero value),
// so a type that is both is described twice, the request's as <Name>Input. Neither takes
// fields it does not list: the server writes none and refuses unknown ones.
type schemaSet struct {
	m     map[string]any
	out   map[string]bool         // names described as answers
	types map[string]reflect.Type // the type each name describes
}

func newSchemaSet() *schemaSet {
	return &schemaSet{m: map[string]any{}, out: map[string]bool{}, types: map[string]reflect.Type{}}
}

// name is a struct's component name: its own, or, when another package's type has it (two
// Results), its package's name in front (AuditResult).
func (s *schemaSet) name(t reflect.Type) string {
	name := t.Name()
	if other, ok := s.types[name]; ok && other != t {
		pkg := t.PkgPath()[strings.LastIndexByte(t.PkgPath(), '/')+1:]
		name = strings.ToUpper(pkg[:1]) + pkg[1:] + name
	}
	s.types[name] = t
	return name
}

// ref returns a JSON schema for t, registering named structs under components; in says it is
// (part of) a request.
func (s *schemaSet) ref(t reflect.Type, in bool) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == rawJSONType:
		return map[string]any{} // any JSON value
	case t == idListType:
		return map[string]any{"type": "array", "items": map[string]any{"type": "string", "pattern": "^[1-9][0-9]*$"},
			"description": "64-bit ids as strings"}
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8:
		return map[string]any{"type": "string", "contentEncoding": "base64"}
	case t.Kind() == reflect.Struct:
		name := s.name(t)
		if in && s.out[name] {
			name += "Input"
		}
		if _, done := s.m[name]; !done {
			s.m[name] = nil // placeholder: stops recursion
			if !in {
				s.out[name] = true
			}
			s.m[name] = s.structSchema(t, in)
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	case t.Kind() == reflect.Slice:
		return map[string]any{"type": "array", "items": s.ref(t.Elem(), in)}
	case t.Kind() == reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": s.ref(t.Elem(), in)}
	case t.Kind() == reflect.String:
		return map[string]any{"type": "string"}
	case t.Kind() == reflect.Bool:
		return map[string]any{"type": "boolean"}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return map[string]any{"type": "integer", "format": "int64"}
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return map[string]any{"type": "number"}
	}
	return map[string]any{}
}

func (s *schemaSet) structSchema(t reflect.Type, in bool) map[string]any {
	props := map[string]any{}
	var required []any
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if !f.IsExported() && !f.Anonymous || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if ft := f.Type; f.Anonymous && name == "" {
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct { // Go writes an embedded struct's fields as the outer's own
				inner := s.structSchema(ft, in)
				maps.Copy(props, inner["properties"].(map[string]any))
				if req, ok := inner["required"].([]any); ok {
					required = append(required, req...)
				}
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		omitted := strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")
		if !in && !omitted {
			required = append(required, name) // Go always writes it
		}
		if strings.Contains(opts, "string") {
			props[name] = map[string]any{"type": "string", "pattern": "^[0-9]+$", "description": "a 64-bit id as a string"}
			continue
		}
		sc := s.ref(f.Type, in)
		if k := f.Type.Kind(); (k == reflect.Pointer || k == reflect.Slice || k == reflect.Map) && !omitted &&
			f.Type != rawJSONType {
			sc = orNull(sc) // Go writes a nil one as null
		}
		props[name] = sc
	}
	sc := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if required != nil {
		sc["required"] = required
	}
	return sc
}
