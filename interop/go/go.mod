module gopro/interop

go 1.23
