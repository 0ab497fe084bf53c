package metaserver

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/strata-hpc/strata/proto/stratapb"
)

// TestTenantRPCFieldsClassified walks the request type of every RPC a
// tenant may call (nested messages too): each uint64 field must be known
// as an inode field (checked and translated) or a plain one, and every
// listed RPC must exist. A new field or RPC shows up here before it can
// reach a tenant unchecked.
func TestTenantRPCFieldsClassified(t *testing.T) {
	seen := map[string]bool{}
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		svcs := fd.Services()
		for i := 0; i < svcs.Len(); i++ {
			sd := svcs.Get(i)
			for j := 0; j < sd.Methods().Len(); j++ {
				md := sd.Methods().Get(j)
				name := "/" + string(sd.FullName()) + "/" + string(md.Name())
				if !tenantRPCs[name] {
					continue
				}
				seen[name] = true
				checkFields(t, name, md.Input(), map[protoreflect.FullName]bool{})
			}
		}
		return true
	})
	for name := range tenantRPCs {
		if !seen[name] {
			t.Errorf("tenantRPCs lists %s, which no service has", name)
		}
	}
	if len(seen) < 30 {
		t.Fatalf("only %d tenant RPCs found", len(seen))
	}
}

func checkFields(t *testing.T, rpc string, md protoreflect.MessageDescriptor, visiting map[protoreflect.FullName]bool) {
	if visiting[md.FullName()] || md.FullName() == "strata.v1.RequestHeader" {
		return
	}
	visiting[md.FullName()] = true
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		switch fd.Kind() {
		case protoreflect.MessageKind:
			if !fd.IsMap() {
				checkFields(t, rpc, fd.Message(), visiting)
			}
		case protoreflect.Uint64Kind:
			if !inodeFields[fd.Name()] && !plainFields[fd.Name()] {
				t.Errorf("%s: field %s is neither an inode field nor a plain one", rpc, fd.FullName())
			}
			if inodeFields[fd.Name()] && fd.IsList() {
				t.Errorf("%s: repeated inode field %s is not checked", rpc, fd.FullName())
			}
		case protoreflect.StringKind:
			if strings.Contains(string(fd.Name()), "session") && fd.Name() != "session" {
				t.Errorf("%s: session-like field %s is not prefixed", rpc, fd.FullName())
			}
		}
	}
}
