// Package pkgdoc holds a repository-wide test: every keygate package has a
// package doc comment.
package pkgdoc
