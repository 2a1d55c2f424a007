"""Tool plugins: each a small pair of how to run the tool and a pure output parser."""
