"""How penmail shows things, in the full-screen UI and in line mode alike: sizes, dates and
the header block (format), a message's HTML part as text (htmlbody), end dates as people type
and read them (end_date).

No Textual here. Untrusted text still reaches the screen only through tui.safe_text, which
stays at tui's root (the guide names it there). May import tui.safe_text and one another; nothing else of tui.
"""
