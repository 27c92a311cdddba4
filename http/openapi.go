package http

import (
	"reflect"
	"strconv"
	"strings"
	"time"
)

// openAPI describes every route in OpenAPI 3.1, built from the same table the mux serves, so
// the description cannot drift from the API.
func (s *Server) openAPI() map[string]any {
	schemas := map[string]any{}
	paths := map[string]map[string]any{}
	errRef := schemaRef(reflect.TypeOf(ErrorBody{}), schemas)
	for _, rt := range s.routes {
		op := map[string]any{
			"summary":     rt.summary,
			"operationId": strings.ToLower(rt.method) + strings.NewReplacer("/", "_", "{", "", "}", "").Replace(rt.path),
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
				"application/json": map[string]any{"schema": schemaRef(reflect.TypeOf(rt.in), schemas)}}}
		} else if len(rt.bodyTypes) > 0 {
			content := map[string]any{}
			for _, t := range rt.bodyTypes {
				content[t] = map[string]any{}
			}
			op["requestBody"] = map[string]any{"required": true, "content": content}
		}
		ok := map[string]any{"description": "success"}
		if rt.out != nil {
			ok["content"] = map[string]any{"application/json": map[string]any{"schema": schemaRef(reflect.TypeOf(rt.out), schemas)}}
		}
		op["responses"] = map[string]any{
			strconv.Itoa(rt.status): ok,
			"default": map[string]any{"description": "error", "content": map[string]any{
				"application/json": map[string]any{"schema": errRef}}},
		}
		if rt.access == signedIn {
			op["security"] = []any{map[string]any{"bearer": []any{}}}
		}
		if paths[rt.path] == nil {
			paths[rt.path] = map[string]any{}
		}
		paths[rt.path][strings.ToLower(rt.method)] = op
	}
	for _, op := range []struct {
		path, summary, contentType string
		schema                     map[string]any
	}{
		{"/healthz", "Liveness: the process answers", "application/json", map[string]any{"type": "object"}},
		{"/readyz", "Readiness: every configured backend answers (503 otherwise)", "application/json", schemaRef(reflect.TypeOf(Readiness{}), schemas)},
		{"/metrics", "Prometheus metrics", "text/plain", map[string]any{"type": "string"}},
		{"/openapi.json", "This description", "application/json", map[string]any{"type": "object"}},
	} {
		paths[op.path] = map[string]any{"get": map[string]any{
			"summary": op.summary, "operationId": "get" + strings.NewReplacer("/", "_", ".", "_").Replace(op.path),
			"responses": map[string]any{"200": map[string]any{"description": "success",
				"content": map[string]any{op.contentType: map[string]any{"schema": op.schema}}}},
		}}
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info":    map[string]any{"title": "Surge API", "version": "1"},
		"paths":   paths,
		"components": map[string]any{
			"schemas":         schemas,
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

var timeType = reflect.TypeOf(time.Time{})

// schemaRef returns a JSON schema for t, registering named structs under components.
func schemaRef(t reflect.Type, schemas map[string]any) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t.Kind() == reflect.Struct:
		name := t.Name()
		if _, done := schemas[name]; !done {
			schemas[name] = nil // placeholder: stops recursion
			schemas[name] = structSchema(t, schemas)
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	case t.Kind() == reflect.Slice:
		return map[string]any{"type": "array", "items": schemaRef(t.Elem(), schemas)}
	case t.Kind() == reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaRef(t.Elem(), schemas)}
	case t.Kind() == reflect.String:
		return map[string]any{"type": "string"}
	case t.Kind() == reflect.Bool:
		return map[string]any{"type": "boolean"}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return map[string]any{"type": "integer", "format": "int64"}
	}
	return map[string]any{}
}

func structSchema(t reflect.Type, schemas map[string]any) map[string]any {
	props := map[string]any{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if !f.IsExported() || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		if strings.Contains(opts, "string") {
			props[name] = map[string]any{"type": "string", "pattern": "^[0-9]+$", "description": "a 64-bit id as a string"}
			continue
		}
		props[name] = schemaRef(f.Type, schemas)
	}
	return map[string]any{"type": "object", "properties": props}
}
