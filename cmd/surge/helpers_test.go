package main

import (
	"net/http"

	"github.com/surgecommerce/surge/client"
)

func ptr[T any](v T) *T { return &v }

func authorized(r *http.Request, c *client.Client) *http.Request { return c.Authorize(r) }
