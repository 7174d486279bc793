package runc

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestListeningParsesProcNetTCP(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0BB8 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1389 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
`
	path := filepath.Join(t.TempDir(), "tcp")
	os.WriteFile(path, []byte(table), 0o644)
	got, err := listening(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{8080, 5001}; !reflect.DeepEqual(got, want) {
		t.Errorf("listening = %v, want %v (the established connection on 3000 is not listening)", got, want)
	}
}
