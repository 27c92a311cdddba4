package surge_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/surgecommerce/surge"
)

// Lists of ids are strings of digits, each positive and written one way; anything else is a
// clear EINVALID through the decoder every body goes through.
func TestIDList(t *testing.T) {
	var v struct {
		IDs surge.IDList `json:"ids"`
	}
	if err := surge.DecodeJSONBytes([]byte(`{"ids":["1","9223372036854775807"]}`), &v); err != nil || !slices.Equal(v.IDs, surge.IDList{1, 1<<63 - 1}) {
		t.Fatalf("decoded %v, %v", v.IDs, err)
	}
	if b, _ := json.Marshal(v); string(b) != `{"ids":["1","9223372036854775807"]}` {
		t.Fatalf("encoded %s", b)
	}
	for _, body := range []string{`{"ids":[1]}`, `{"ids":["-1"]}`, `{"ids":["0"]}`, `{"ids":["01"]}`, `{"ids":["1e3"]}`,
		`{"ids":"1"}`, `{"ids":["9223372036854775808"]}`, `{"ids":[null]}`, `{"ids":{}}`} {
		err := surge.DecodeJSONBytes([]byte(body), &v)
		if surge.ErrorCode(err) != surge.EINVALID || surge.ErrorMessage(err) == "" {
			t.Errorf("decoding %s = %v; want EINVALID with a message", body, err)
		}
	}
}

// Whatever a client sends, a list of ids decodes to positive ids that encode back to what was
// read, or is refused with EINVALID.
func FuzzIDList(f *testing.F) {
	for _, seed := range []string{`["1","2"]`, `[]`, `null`, `[1]`, `["01"]`, `["-5"]`, `["18446744073709551616"]`, `[""]`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var l surge.IDList
		if err := surge.DecodeJSONBytes(body, &l); err != nil {
			if surge.ErrorCode(err) != surge.EINVALID {
				t.Fatalf("decoding %q = %v; want EINVALID", body, err)
			}
			return
		}
		for _, id := range l {
			if id <= 0 {
				t.Fatalf("decoding %q gave id %d", body, id)
			}
		}
		b, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		var again surge.IDList
		if err := surge.DecodeJSONBytes(b, &again); err != nil || !slices.Equal(l, again) {
			t.Fatalf("%q decoded to %v, encoded to %s, decoded again to %v, %v", body, l, b, again, err)
		}
	})
}
