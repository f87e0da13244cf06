module benchgorelay

go 1.22
