package surge

import (
	"bytes"
	"slices"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
)

// The events' own readers and writer give what the JSON library gives on any input: the same
// events or an error (what is left half-read after an error is not compared: callers drop it),
// alone and in arrays, with and without unknown members refused; and, for
// every event read, the same bytes written.
func FuzzBusinessEventJSON(f *testing.F) {
	for _, s := range []string{
		`{"id":"b42","type":"pay","time":1790000000000,"platform":"ios","room":"r7","shop":"3","sku":"s512","user":"u9041","order":"o42","units":1,"amount":9900}`,
		`{ "id" : "c1" , "type":"click", "time": -0, "sku":"s", "units": null, "text": null }`,
		`{"id":"x","type":"comment","time":1,"text":"caf\u00e9 \"ok\" 好"}`,
		`{"id":"x","time":1.5}`, `{"id":"x","time":1e3}`, `{"id":"x","time":"1"}`, `{"id":1}`,
		`{"id":"x","time":9223372036854775807}`, `{"id":"x","time":9223372036854775808}`, `{"id":"x","time":-9223372036854775808}`,
		`{"id":"x","extra":{"a":[1,2]},"more":true}`, `{"id":"x","ID":"y"}`, `{"id":"x","id":"y"}`, `{"i\u0064":"x"}`,
		`{"id":"x","units":true}`, `null`, `[]`, `"x"`, `{}`, `{"id":"\ud800"}`, "{\"id\":\"\xff\"}",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, rejectUnknown bool) {
		// Both start from an event already filled: the fields data does not name stay.
		got := BusinessEvent{ID: "pre", Type: BizClick, Time: 5, Text: "t", Units: 2}
		want := got
		gotErr := UnmarshalBusinessEvent(data, &got, rejectUnknown)
		wantErr := jsonv2.Unmarshal(data, &want, jsonv2.RejectUnknownMembers(rejectUnknown))
		if (gotErr == nil) != (wantErr == nil) || (gotErr == nil && got != want) {
			t.Fatalf("%q read as %+v (%v); the library reads %+v (%v)", data, got, gotErr, want, wantErr)
		}
		for _, arr := range [][]byte{data, append(append([]byte("[null,"), data...), ']'), append(append([]byte(" [ "), data...), []byte(" , {} ] ")...)} {
			gotAll, gotErr := UnmarshalBusinessEvents(arr)
			var wantAll []BusinessEvent
			wantErr := jsonv2.Unmarshal(arr, &wantAll)
			if (gotErr == nil) != (wantErr == nil) || (gotErr == nil && !slices.Equal(gotAll, wantAll)) {
				t.Fatalf("%q read as %+v (%v); the library reads %+v (%v)", arr, gotAll, gotErr, wantAll, wantErr)
			}
		}
		if gotErr != nil {
			return
		}
		out, err := got.AppendJSON([]byte("prefix"))
		lib, libErr := jsonv2.Marshal(want)
		if (err == nil) != (libErr == nil) || (err == nil && !bytes.Equal(out, append([]byte("prefix"), lib...))) {
			t.Fatalf("%+v written as %s (%v); the library writes %s (%v)", got, out, err, lib, libErr)
		}
	})
}

// Strings that need escapes or are not UTF-8 are written as the library writes them.
func FuzzBusinessEventAppendJSON(f *testing.F) {
	f.Add("b42", "pay", int64(1790000000000), "ios", "s\"1\\", "caf\u00e9\n<&>\u2028", int64(3), int64(0))
	f.Add("", "", int64(0), "", "", "\xff", int64(-1), int64(1))
	f.Fuzz(func(t *testing.T, id, typ string, at int64, plat, sku, text string, units, amount int64) {
		e := BusinessEvent{ID: id, Type: typ, Time: at, Platform: plat, SKU: sku, Text: text, Units: units, Amount: amount,
			User: sku, Room: plat, Shop: id, Session: typ, Order: text, Status: sku}
		out, err := e.AppendJSON(nil)
		lib, libErr := jsonv2.Marshal(e)
		if (err == nil) != (libErr == nil) || (err == nil && !bytes.Equal(out, lib)) {
			t.Fatalf("%+v written as %s (%v); the library writes %s (%v)", e, out, err, lib, libErr)
		}
	})
}

// The forms Surge and its SDKs write are read without the library; escapes, fractions, unknown
// members, names given twice and bad syntax are left to it.
func TestPlainEventsAreReadDirectly(t *testing.T) {
	for _, c := range []struct {
		obj   string
		plain bool
	}{
		{`{"id":"b42","type":"pay","time":1790000000000,"platform":"ios","shop":"3","units":1,"amount":9900}`, true},
		{"{ \"id\" :\t\"c1\",\n\"type\": \"click\" , \"units\":null }", true},
		{`{"id":"é"}`, true},
		{"{\"id\":\"\xff\"}", false},
		{`{"id":"c1","id":"c2"}`, false},
		{`{"id":"c1",}`, false},
		{`{"id":"c1","time":01}`, false},
		{`{"id":"c1","extra":"x"}`, false},
		{`{"id":"c\"1"}`, false},
		{`{"id":"c1","time":1.0}`, false},
		{`{"id":"c1","time":12345678901234567890}`, false},
		{`{"id":"c1","time":"1"}`, false},
		{`{"id":2}`, false},
		{`{"id":"c1","extra":[1]}`, false},
	} {
		var e BusinessEvent
		if _, got := e.readPlain([]byte(c.obj), 0); got != c.plain {
			t.Errorf("readPlain(%s) = %v; want %v", c.obj, got, c.plain)
		}
	}
}
