package pidfd

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestDecodeWaitStatus(t *testing.T) {
	for ws, want := range map[int]int{0: 0, 3 << 8: 3, 255 << 8: 255, int(syscall.SIGKILL): 137, int(syscall.SIGTERM): 143} {
		if got := decodeWaitStatus(ws); got != want {
			t.Errorf("decodeWaitStatus(%#x) = %d, want %d", ws, got, want)
		}
	}
}

func TestReadStat(t *testing.T) {
	st, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.Start == 0 || (st.State != 'R' && st.State != 'S') {
		t.Errorf("ReadStat(self) = %+v", st)
	}
}

// TestOpenWatchesAProcess: a pidfd opened with the right start time sees
// the process exit; one with another start time (a reused pid) is refused.
func TestOpenWatchesAProcess(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	st, err := ReadStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if f, err := Open(cmd.Process.Pid, st.Start+1); err != nil || f != nil {
		t.Fatalf("Open with a wrong start time = %v, %v; want nil, nil", f, err)
	}
	f, err := Open(cmd.Process.Pid, st.Start)
	if err != nil || f == nil {
		t.Fatalf("Open = %v, %v", f, err)
	}
	defer f.Close()
	if Exited(int(f.Fd())) {
		t.Fatal("Exited before the process ended")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for !Exited(int(f.Fd())) {
		if time.Now().After(deadline) {
			t.Fatal("Exited never reported the exit")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
