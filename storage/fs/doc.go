// Package fs is a storage.ObjectStore on a local folder.
//
// A key a/b/c is the file ROOT/a/b/c. Put writes a temporary file beside
// the target, fsyncs it, renames it over the target and fsyncs the folder,
// so a reader sees the old or the new object and a returned Put survives a
// crash. It is what `sluice demo` uses, so that the objects it writes can be
// inspected with ordinary tools afterwards.
//
// Because keys are paths, a key cannot be both an object and the parent of
// other keys (a and a/b); object stores allow that, a folder does not. The
// keys sluice writes never do it.
package fs
