"""Prints the client x prefix x mode table from the cells the tests recorded."""

import json
import sys


def main(path):
    try:
        with open(path, encoding="utf-8") as f:
            cells = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return
    if not cells:
        return
    table = {}
    clients, columns = [], []
    for c in cells:
        col = f"{c['prefix']} {c['mode']}"
        if c["client"] not in clients:
            clients.append(c["client"])
        if col not in columns:
            columns.append(col)
        table[(c["client"], col)] = c["result"]
    width = max(len(x) for x in columns + ["client"]) + 2
    print("\n== client x prefix x mode")
    print("client".ljust(8) + "".join(col.ljust(width) for col in columns))
    for client in clients:
        print(client.ljust(8) + "".join(table.get((client, col), "-").ljust(width) for col in columns))


if __name__ == "__main__":
    main(sys.argv[1])
