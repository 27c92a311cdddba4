package catalog_test

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/catalog"
)

// drain reads a source to its end, checking what every import parser promises: no panic, lines
// that never go backwards, domain errors for bad lines, and validation that never panics either.
func drain(t *testing.T, src catalog.Source) {
	last := 0
	for i := 0; i < surge.MaxImportLines+1; i++ {
		row, err := src.Next()
		if err == io.EOF {
			return
		}
		if row.Line < last {
			t.Fatalf("line %d after line %d", row.Line, last)
		}
		last = row.Line
		var de *surge.Error
		if err != nil && !errors.As(err, &de) {
			t.Fatalf("Next() = %v; want a domain error for bad input from memory", err)
		}
		if err != nil && de.Code == surge.ETOOLARGE {
			return
		}
		if err == nil {
			if _, _, err := row.Entities(1, time.Now()); err != nil && surge.ErrorCode(err) != surge.EINVALID {
				t.Fatalf("Entities = %v; want nil or EINVALID", err)
			}
		}
	}
	t.Fatal("the source never ended")
}

func FuzzCSV(f *testing.F) {
	header := "spu_code,spu_title,category_l1,category_l2,sku_code,sku_title,price_minor,cost_minor,currency,stock\n"
	for _, seed := range []string{
		header + "A,A,C,C,A1,A1,100,50,CNY,5\n",
		header + "A,\"quoted, title\",C,C,A1,A1,100,50,CNY,5\n",
		header + "A,A,C,C,A1,A1,abc,50,CNY,5\nB,B\n",
		"\ufeff" + header + "A,A,C,C,A1,A1,1,1,CNY,1",
		header + "\"unterminated\n",
		"sku_code\n", "", "\xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src, err := catalog.NewCSV(bytes.NewReader(data))
		if err != nil {
			if surge.ErrorCode(err) != surge.EINVALID {
				t.Fatalf("NewCSV = %v; want EINVALID", err)
			}
			return
		}
		drain(t, src)
	})
}

func FuzzJSONL(f *testing.F) {
	for _, seed := range []string{
		`{"spu_code":"A","spu_title":"A","category_l1":"C","sku_code":"A1","sku_title":"A1","price_minor":1,"cost_minor":1,"currency":"CNY","stock":1}` + "\n",
		"\n\n{}\n{\"x\":1}\n[1,2]\n",
		`{"stock":1e400}`, `{"stock":"5"}`, "{\"spu_title\":\"\xff\"}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) { drain(t, catalog.NewJSONL(bytes.NewReader(data))) })
}
