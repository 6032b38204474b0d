package admin

import (
	"context"
	"log/slog"
	"strconv"
)

type contextT = context.Context

func itoa(n int) string { return strconv.Itoa(n) }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
