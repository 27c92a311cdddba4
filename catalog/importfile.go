package catalog

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/surgecommerce/surge"
)

// importColumns are the columns of a CSV import, by header name; the last two are optional.
// images holds image URLs separated by spaces.
var importColumns = []string{"spu_code", "spu_title", "category_l1", "category_l2", "sku_code", "sku_title",
	"price_minor", "cost_minor", "currency", "stock", "description", "images"}

const optionalColumns = 2

// CSV reads an import file with a header line naming its columns (in any order).
type CSV struct {
	r   *csv.Reader
	col map[string]int
	end int64 // input offset after the previous record
}

// NewCSV reads the header of a CSV import. Returns EINVALID if a column is unknown, repeated or
// missing.
func NewCSV(r io.Reader) (*CSV, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil, surge.Errorf(surge.EINVALID, "the file is empty; line 1 must name the columns")
	}
	if err != nil {
		return nil, readError(1, err)
	}
	if len(header) > surge.MaxImportColumnCount {
		return nil, surge.Errorf(surge.EINVALID, "line 1: at most %d columns", surge.MaxImportColumnCount)
	}
	col := make(map[string]int, len(header))
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")) // spreadsheets write a BOM
		if _, dup := col[h]; dup {
			return nil, surge.Errorf(surge.EINVALID, "line 1: column %q appears twice", h)
		}
		known := false
		for _, c := range importColumns {
			known = known || c == h
		}
		if !known {
			return nil, surge.Errorf(surge.EINVALID, "line 1: unknown column %q; columns are %s", h, strings.Join(importColumns, ","))
		}
		col[h] = i
	}
	for _, c := range importColumns[:len(importColumns)-optionalColumns] {
		if _, ok := col[c]; !ok {
			return nil, surge.Errorf(surge.EINVALID, "line 1: column %q is missing", c)
		}
	}
	cr.FieldsPerRecord = len(header)
	return &CSV{r: cr, col: col, end: cr.InputOffset()}, nil
}

// Next implements Source.
func (c *CSV) Next() (surge.ImportRow, error) {
	rec, err := c.r.Read()
	if err == io.EOF {
		return surge.ImportRow{}, io.EOF
	}
	var row surge.ImportRow
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			row.Line = pe.StartLine
		}
		return row, readError(row.Line, err)
	}
	row.Line, _ = c.r.FieldPos(0) // only valid after a successful Read
	start := c.end
	if c.end = c.r.InputOffset(); c.end-start > surge.MaxImportLineBytes {
		return row, surge.Errorf(surge.ETOOLARGE, "a record is longer than %d bytes", surge.MaxImportLineBytes)
	}
	get := func(name string) string {
		if i, ok := c.col[name]; ok {
			return rec[i]
		}
		return ""
	}
	row.SPUCode, row.SPUTitle = get("spu_code"), get("spu_title")
	row.CategoryL1, row.CategoryL2 = get("category_l1"), get("category_l2")
	row.SKUCode, row.SKUTitle = get("sku_code"), get("sku_title")
	row.Currency = get("currency")
	if _, ok := c.col["description"]; ok {
		d := get("description")
		row.Description = &d
	}
	if _, ok := c.col["images"]; ok {
		images := strings.Fields(get("images"))
		row.Images = &images
	}
	for _, f := range []struct {
		name string
		dst  *int64
	}{{"price_minor", &row.PriceMinor}, {"cost_minor", &row.CostMinor}, {"stock", &row.Stock}} {
		v, err := strconv.ParseInt(strings.TrimSpace(get(f.name)), 10, 64)
		if err != nil {
			return row, surge.Errorf(surge.EINVALID, "%s must be a whole number of minor units (or units of stock)", f.name)
		}
		*f.dst = v
	}
	return row, nil
}

// JSONL reads an import file of one JSON object per line; blank lines are skipped.
type JSONL struct {
	s    *bufio.Scanner
	line int
}

// NewJSONL returns a JSON-lines import source.
func NewJSONL(r io.Reader) *JSONL {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 4096), surge.MaxImportLineBytes)
	return &JSONL{s: s}
}

// Next implements Source.
func (j *JSONL) Next() (surge.ImportRow, error) {
	for j.s.Scan() {
		j.line++
		b := bytes.TrimSpace(j.s.Bytes())
		if len(b) == 0 {
			continue
		}
		var row surge.ImportRow
		err := surge.DecodeJSONBytes(b, &row)
		row.Line = j.line
		return row, err
	}
	if err := j.s.Err(); err != nil {
		return surge.ImportRow{Line: j.line + 1}, readError(j.line+1, err)
	}
	return surge.ImportRow{}, io.EOF
}

// readError turns a reader's failure into a domain error: a body over its limit or an overlong
// line is ETOOLARGE, a malformed line EINVALID; anything else (a broken connection) stays as it
// is and aborts the import.
func readError(line int, err error) error {
	var pe *csv.ParseError
	var mb *http.MaxBytesError
	switch {
	case errors.Is(err, bufio.ErrTooLong):
		return surge.Errorf(surge.ETOOLARGE, "line %d is longer than %d bytes", line, surge.MaxImportLineBytes)
	case errors.As(err, &mb):
		return surge.Errorf(surge.ETOOLARGE, "the file is larger than %d bytes", mb.Limit)
	case errors.As(err, &pe):
		return surge.Errorf(surge.EINVALID, "malformed CSV: %v", pe.Err)
	}
	return fmt.Errorf("read import: %w", err)
}
